// Fault injection for the tests that poison or kill real runs. The test sets
// BOLTZFLOW_FAULT_INJECT in the environment of the processes it starts; the
// command reads it once, here, and hands the plan to the code it affects:
//   nan-at-step:S       the loss of step S is replaced by NaN once (rollback path)
//   checkpoint-write:K  the process dies half-way through its K-th checkpoint
//                       write, as a job killed by the scheduler at the wrong moment
#pragma once

#include <cstdlib>
#include <string>

namespace bf {

struct FaultPlan {
  long long nan_at_step = -1;
  long long kill_in_checkpoint_write = -1;

  static FaultPlan from_environment() {
    FaultPlan p;
    const char* v = std::getenv("BOLTZFLOW_FAULT_INJECT");
    const std::string f = v ? v : "";
    auto value_after = [&](const std::string& key, long long& out) {
      if (f.rfind(key, 0) == 0) out = std::atoll(f.c_str() + key.size());
    };
    value_after("nan-at-step:", p.nan_at_step);
    value_after("checkpoint-write:", p.kill_in_checkpoint_write);
    return p;
  }
};

}  // namespace bf
