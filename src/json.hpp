// A small JSON value: enough to write reports (metrics, evaluate --json) and
// read them back (resume, batch evaluation). Objects keep insertion order.
// Non-finite numbers are written as null (JSON has no NaN).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bf {

class Json {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : kind_(Kind::Bool), bool_(b) {}
  Json(double v) : kind_(Kind::Number), num_(v) {}
  Json(int v) : kind_(Kind::Number), num_(v), integral_(true), int_(v) {}
  Json(long v) : kind_(Kind::Number), num_(static_cast<double>(v)), integral_(true), int_(v) {}
  Json(long long v) : kind_(Kind::Number), num_(static_cast<double>(v)), integral_(true), int_(v) {}
  Json(unsigned v) : Json(static_cast<long long>(v)) {}
  Json(unsigned long v) : Json(static_cast<long long>(v)) {}
  Json(const char* s) : kind_(Kind::String), str_(s) {}
  Json(std::string s) : kind_(Kind::String), str_(std::move(s)) {}
  Json(const std::vector<double>& v);

  static Json array() { Json j; j.kind_ = Kind::Array; return j; }
  static Json object() { Json j; j.kind_ = Kind::Object; return j; }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_array() const { return kind_ == Kind::Array; }

  /// Object member (created if absent).
  Json& operator[](const std::string& key);
  const Json& at(const std::string& key) const;  // throws if absent
  bool contains(const std::string& key) const;
  void push_back(Json v);
  std::size_t size() const;
  const Json& at(std::size_t i) const;
  const std::vector<std::pair<std::string, Json>>& items() const { return obj_; }

  double number() const;  // NaN for null
  long long integer() const;
  bool boolean() const;
  const std::string& string() const;

  /// Compact one-line text (indent < 0) or pretty-printed.
  std::string dump(int indent = -1) const;
  /// Parses JSON text; throws std::runtime_error with the offset on error.
  static Json parse(const std::string& text);

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  double num_ = 0;
  bool integral_ = false;
  long long int_ = 0;
  std::string str_;
  std::vector<Json> arr_;
  std::vector<std::pair<std::string, Json>> obj_;
};

}  // namespace bf
