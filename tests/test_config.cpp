// The configuration: INI parsing, overrides, validation and its messages.
#include <gtest/gtest.h>

#include "src/config.hpp"

using namespace bf;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, DefaultsAndIniAndOverride) {
  Config c;
  EXPECT_EQ(c.get_string("target.name"), "gmm4");
  EXPECT_EQ(c.get_int("run.seed"), 1);
  c.load_string("# a comment\n[target]\nname = phi4   # inline comment\nm = 0.75\nshape = 8x8\n\n[run]\nseed=17\n",
                "test.ini");
  EXPECT_EQ(c.get_string("target.name"), "phi4");
  EXPECT_DOUBLE_EQ(c.get_real("target.m"), 0.75);
  EXPECT_EQ(c.get_ints("target.shape"), (std::vector<long long>{8, 8}));
  EXPECT_EQ(c.get_int("run.seed"), 17);
  EXPECT_EQ(c.origin("target.m"), "test.ini:4");
  c.set("run.seed", "1e3", "--run.seed");
  EXPECT_EQ(c.get_int("run.seed"), 1000);
  // The resolved config reads back to the same values.
  Config d;
  d.load_string(c.to_ini(), "resolved");
  EXPECT_TRUE(c.differences(d).empty());
}

TEST(Config, UnknownKeysAreNamedWithASuggestion) {
  Config c;
  const std::string e = error_of([&] { c.load_string("[target]\nnmae = gmm4\n", "cfg.ini"); });
  EXPECT_NE(e.find("cfg.ini:2"), std::string::npos) << e;
  EXPECT_NE(e.find("target.nmae"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'target.name'"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { c.set("run.sede", "1", "--run.sede"); }).find("run.seed"), std::string::npos);
}

TEST(Config, MalformedAndImpossibleValuesAreRejected) {
  Config c;
  EXPECT_NE(error_of([&] { c.set("run.seed", "abc", "x"); }).find("not an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("run.seed", "-4", "x"); }).find("out of range"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("target.name", "gmm5", "x"); }).find("not one of"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("target.m", "1.2.3", "x"); }).find("not a number"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("target.m", "nan", "x"); }).find("finite"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("target.shape", "8x1", "x"); }).find("out of range"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("target.shape", "", "x"); }).find("needs a value"), std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("[target\nname=gmm4\n", "f"); }).find("malformed section"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("name = gmm4\n", "f"); }).find("outside any [section]"), std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("[run]\nseed 4\n", "f"); }).find("expected 'key = value'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("[run]\nseed = 4\nseed = 5\n", "f"); }).find("set twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_file("/nonexistent/boltzflow.ini"); }).find("cannot read"), std::string::npos);
}
