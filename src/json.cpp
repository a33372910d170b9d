#include "src/json.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace bf {

Json::Json(const std::vector<double>& v) : kind_(Kind::Array) {
  for (double x : v) arr_.emplace_back(x);
}

Json& Json::operator[](const std::string& key) {
  if (kind_ == Kind::Null) kind_ = Kind::Object;
  if (kind_ != Kind::Object) throw std::logic_error("json: not an object");
  for (auto& kv : obj_)
    if (kv.first == key) return kv.second;
  obj_.emplace_back(key, Json());
  return obj_.back().second;
}

const Json& Json::at(const std::string& key) const {
  if (kind_ == Kind::Object)
    for (const auto& kv : obj_)
      if (kv.first == key) return kv.second;
  throw std::runtime_error("json: missing key '" + key + "'");
}

bool Json::contains(const std::string& key) const {
  if (kind_ != Kind::Object) return false;
  for (const auto& kv : obj_)
    if (kv.first == key) return true;
  return false;
}

void Json::push_back(Json v) {
  if (kind_ == Kind::Null) kind_ = Kind::Array;
  if (kind_ != Kind::Array) throw std::logic_error("json: not an array");
  arr_.push_back(std::move(v));
}

std::size_t Json::size() const { return kind_ == Kind::Array ? arr_.size() : obj_.size(); }
const Json& Json::at(std::size_t i) const { return arr_.at(i); }

double Json::number() const {
  if (kind_ == Kind::Null) return std::nan("");
  if (kind_ != Kind::Number) throw std::runtime_error("json: not a number");
  return num_;
}
long long Json::integer() const {
  if (kind_ != Kind::Number) throw std::runtime_error("json: not a number");
  return integral_ ? int_ : static_cast<long long>(num_);
}
bool Json::boolean() const {
  if (kind_ != Kind::Bool) throw std::runtime_error("json: not a boolean");
  return bool_;
}
const std::string& Json::string() const {
  if (kind_ != Kind::String) throw std::runtime_error("json: not a string");
  return str_;
}

namespace {
void escape(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

void Json::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent >= 0) {
      out += '\n';
      out.append(static_cast<std::size_t>(indent * d), ' ');
    }
  };
  switch (kind_) {
    case Kind::Null: out += "null"; break;
    case Kind::Bool: out += bool_ ? "true" : "false"; break;
    case Kind::Number:
      if (integral_) {
        out += std::to_string(int_);
      } else if (!std::isfinite(num_)) {
        out += "null";
      } else {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", num_);
        out += buf;
      }
      break;
    case Kind::String: escape(out, str_); break;
    case Kind::Array:
      out += '[';
      for (std::size_t i = 0; i < arr_.size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        newline(depth + 1);
        arr_[i].dump_to(out, indent, depth + 1);
      }
      if (!arr_.empty()) newline(depth);
      out += ']';
      break;
    case Kind::Object:
      out += '{';
      for (std::size_t i = 0; i < obj_.size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        newline(depth + 1);
        escape(out, obj_[i].first);
        out += ": ";
        obj_[i].second.dump_to(out, indent, depth + 1);
      }
      if (!obj_.empty()) newline(depth);
      out += '}';
      break;
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

namespace {
struct Parser {
  const std::string& s;
  std::size_t p = 0;
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("json: " + what + " at offset " + std::to_string(p));
  }
  void ws() {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\n' || s[p] == '\t' || s[p] == '\r')) ++p;
  }
  bool lit(const char* w) {
    std::size_t n = std::char_traits<char>::length(w);
    if (s.compare(p, n, w) == 0) {
      p += n;
      return true;
    }
    return false;
  }
  std::string str() {
    if (s[p] != '"') fail("expected string");
    ++p;
    std::string out;
    while (p < s.size() && s[p] != '"') {
      char c = s[p++];
      if (c == '\\') {
        if (p >= s.size()) fail("bad escape");
        char e = s[p++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {
            if (p + 4 > s.size()) fail("bad \\u escape");
            unsigned v = static_cast<unsigned>(std::strtoul(s.substr(p, 4).c_str(), nullptr, 16));
            p += 4;
            if (v < 0x80) out += static_cast<char>(v);
            else if (v < 0x800) { out += static_cast<char>(0xC0 | (v >> 6)); out += static_cast<char>(0x80 | (v & 0x3F)); }
            else { out += static_cast<char>(0xE0 | (v >> 12)); out += static_cast<char>(0x80 | ((v >> 6) & 0x3F)); out += static_cast<char>(0x80 | (v & 0x3F)); }
            break;
          }
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    if (p >= s.size()) fail("unterminated string");
    ++p;
    return out;
  }
  Json value() {
    ws();
    if (p >= s.size()) fail("unexpected end");
    char c = s[p];
    if (c == '{') {
      ++p;
      Json o = Json::object();
      ws();
      if (s[p] == '}') { ++p; return o; }
      for (;;) {
        ws();
        std::string k = str();
        ws();
        if (s[p] != ':') fail("expected ':'");
        ++p;
        o[k] = value();
        ws();
        if (s[p] == ',') { ++p; continue; }
        if (s[p] == '}') { ++p; return o; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++p;
      Json a = Json::array();
      ws();
      if (s[p] == ']') { ++p; return a; }
      for (;;) {
        a.push_back(value());
        ws();
        if (s[p] == ',') { ++p; continue; }
        if (s[p] == ']') { ++p; return a; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') return Json(str());
    if (lit("true")) return Json(true);
    if (lit("false")) return Json(false);
    if (lit("null")) return Json();
    const char* b = s.c_str() + p;
    char* e = nullptr;
    double v = std::strtod(b, &e);
    if (e == b) fail("unexpected character");
    std::string tok(b, static_cast<std::size_t>(e - b));
    p += tok.size();
    if (tok.find_first_of(".eE") == std::string::npos) return Json(std::strtoll(tok.c_str(), nullptr, 10));
    return Json(v);
  }
};
}  // namespace

Json Json::parse(const std::string& text) {
  Parser ps{text};
  Json v = ps.value();
  ps.ws();
  if (ps.p != text.size()) ps.fail("trailing characters");
  return v;
}

}  // namespace bf
