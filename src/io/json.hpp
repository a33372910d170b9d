// JSON for reports (metrics rows, evaluate/check/bench --json) and for reading
// them back (resume, rollback, inspect): nlohmann-json from Debian
// (nlohmann-json3-dev), as an ordered object so rows keep the order they were
// written in. Non-finite numbers are written as null (JSON has no NaN).
#pragma once

#include <nlohmann/json.hpp>

namespace bf {

using Json = nlohmann::ordered_json;

}  // namespace bf
