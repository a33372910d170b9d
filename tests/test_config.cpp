// The configuration: INI parsing, overrides, validation and its messages.
#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <typeinfo>

#include "src/run/config.hpp"
#include "src/run/model_config.hpp"
#include "src/run/settings.hpp"
#include "src/run/target_config.hpp"

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
  // A malformed list names its key; well-formed spellings still parse.
  for (const char* bad : {"64,,64", ",64", "64,", "64, ,64", "8xx8", "64;"}) {
    const std::string e = error_of([&] { c.set("model.hidden", bad, "cfg.ini:3"); });
    EXPECT_NE(e.find("malformed list"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("cfg.ini:3: model.hidden"), std::string::npos) << e;
  }
  EXPECT_NE(error_of([&] { c.set("model.hidden", "64,abc", "x"); }).find("not a number"), std::string::npos);
  for (const char* good : {"64,64", "64, 64", "64 ,64", "64 64", " 64,64 ", "64;64"}) {
    c.set("model.hidden", good, "x");
    EXPECT_EQ(c.get_ints("model.hidden"), (std::vector<long long>{64, 64})) << good;
  }
  c.set("target.shape", "8 x 8", "x");
  EXPECT_EQ(c.get_ints("target.shape"), (std::vector<long long>{8, 8}));
  EXPECT_NE(error_of([&] { c.load_string("[target\nname=gmm4\n", "f"); }).find("malformed section"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("name = gmm4\n", "f"); }).find("outside any [section]"), std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("[run]\nseed 4\n", "f"); }).find("expected 'key = value'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_string("[run]\nseed = 4\nseed = 5\n", "f"); }).find("set twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.load_file("/nonexistent/boltzflow.ini"); }).find("cannot read"), std::string::npos);
}

// The typed settings read what the Config holds, unset keys stay unset.
TEST(Settings, TypedValuesAreTheConfigsValues) {
  Config c;
  const Settings d = Settings::from(c);
  EXPECT_EQ(d.run.seed, 1);
  EXPECT_EQ(d.train.steps, 1000);
  EXPECT_DOUBLE_EQ(d.train.lr, 3e-3);
  EXPECT_EQ(d.model.hidden, (std::vector<long long>{64, 64}));
  EXPECT_TRUE(d.model.time_input);
  EXPECT_TRUE(d.model.g_hidden.empty());
  EXPECT_FALSE(d.target.m.has_value());
  EXPECT_FALSE(d.target.dim.has_value());
  c.set("train.lr", "0.01", "test");
  c.set("target.m", "0.75", "test");
  c.set("model.hidden", "8, 16, 8", "test");
  const Settings s = Settings::from(c);
  EXPECT_DOUBLE_EQ(s.train.lr, 0.01);
  ASSERT_TRUE(s.target.m.has_value());
  EXPECT_DOUBLE_EQ(*s.target.m, 0.75);
  EXPECT_EQ(s.model.hidden, (std::vector<long long>{8, 16, 8}));
}

// One declaration per key: the registry holds each key once, in section order.
TEST(Settings, RegistryHasEveryKeyOnceInSectionOrder) {
  const auto& keys = config_registry();
  std::set<std::string> seen;
  std::vector<std::string> sections;
  for (const auto& k : keys) {
    EXPECT_TRUE(seen.insert(k.key).second) << k.key << " declared twice";
    const std::string sec = k.key.substr(0, k.key.find('.'));
    if (sections.empty() || sections.back() != sec) sections.push_back(sec);
  }
  EXPECT_EQ(sections, (std::vector<std::string>{"run", "train", "model", "base", "eval", "target"}));
}

// Presets are a pure function: the argument is untouched, the result records where the values came from.
TEST(Settings, PresetsArePure) {
  Config c;
  c.set("target.name", "phi4-dw", "test");
  c.set("target.lambda", "2", "test");
  const Config r = with_presets(c);
  EXPECT_FALSE(c.is_set("target.m"));
  EXPECT_DOUBLE_EQ(r.get_real("target.m"), 3.0);
  EXPECT_EQ(r.origin("target.m"), "preset phi4-dw");
  EXPECT_DOUBLE_EQ(r.get_real("target.lambda"), 2.0);  // given values win
  EXPECT_EQ(r.origin("target.lambda"), "test");
  const Config g = with_presets(Config());  // gmm4: nothing to resolve
  EXPECT_TRUE(g.differences(Config()).empty());
}

// Fuzz: 10⁴ mutations of the shipped configs (bytes flipped, keys misspelt,
// values out of range or emptied, lines cut, duplicated or dropped), each read
// as `train` reads a config: INI, presets, typed settings, the target, the
// model. Every one is accepted or rejected with an InputError that says
// something; no other exception escapes, nothing crashes or hangs.
TEST(Config, FuzzedConfigsAreReadOrRejectedWithAMessage) {
  std::vector<std::string> texts;
  for (const auto& e : std::filesystem::directory_iterator(std::string(BOLTZFLOW_SOURCE_DIR) + "/jobs/configs")) {
    if (e.path().extension() != ".ini") continue;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
  }
  ASSERT_GE(texts.size(), 20u);
  std::mt19937_64 rng(2026);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1)); };
  const std::vector<std::string> values{"", "-1", "0", "1e300", "nan", "inf", "0x10", "64,,64", ",", "8x", "x8",
                                        "true", "maybe", "999999999999999999999", "-0", "1.5", "\"3\"", " = "};
  auto lines_of = [](const std::string& t) {
    std::vector<std::string> l;
    std::istringstream in(t);
    for (std::string s; std::getline(in, s);) l.push_back(s);
    return l;
  };
  static Kokkos::ScopeGuard kokkos;  // the target and the model hold Views (this test program has no MPI main)
  int accepted = 0, rejected = 0, other = 0;
  for (int iter = 0; iter < 10000; ++iter) {
    std::vector<std::string> lines = lines_of(texts[pick(texts.size())]);
    const int edits = 1 + static_cast<int>(pick(3));
    for (int e = 0; e < edits && !lines.empty(); ++e) {
      std::string& l = lines[pick(lines.size())];
      switch (pick(7)) {
        case 0:  // flip a byte (any value but newline)
          if (!l.empty()) l[pick(l.size())] = static_cast<char>(1 + pick(255) == '\n' ? 'x' : 1 + pick(255));
          break;
        case 1:  // misspell: swap two neighbours
          if (l.size() > 1) {
            const std::size_t p = pick(l.size() - 1);
            std::swap(l[p], l[p + 1]);
          }
          break;
        case 2: {  // a value replaced
          const auto eq = l.find('=');
          if (eq != std::string::npos) l = l.substr(0, eq + 1) + " " + values[pick(values.size())];
          break;
        }
        case 3:  // cut
          l = l.substr(0, pick(l.size() + 1));
          break;
        case 4:  // duplicated
          lines.push_back(l);
          break;
        case 5:  // dropped
          l.clear();
          break;
        default:  // a byte inserted
          l.insert(pick(l.size() + 1), 1, "=[]#;,. x\t"[pick(10)]);
      }
    }
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    try {
      Config c;
      c.load_string(text, "fuzz.ini");
      const Config r = with_presets(c);
      const Settings s = Settings::from(r);
      long long sites = 1;
      for (long long v : s.target.shape) sites *= std::min<long long>(v, 1 << 20);
      bool small = s.target.name != "supernova" && sites <= 4096 && s.model.kernels <= 16;
      for (const auto* w : {&s.model.hidden, &s.model.g_hidden, &s.model.c_hidden})
        for (long long v : *w) small = small && v <= 512;
      if (small) {
        const auto target = make_target(s.target);
        with_precision(s, [&](auto zero) {
          using T = decltype(zero);
          return make_model<T>(s, *target, 8, 8) != nullptr;
        });
      }
      ++accepted;
    } catch (const InputError& e) {
      EXPECT_GT(std::string(e.what()).size(), 10u) << "a message that says something, for:\n" << text;
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not an InputError (" << typeid(e).name() << "): " << e.what() << "\nfor:\n" << text;
      if (++other >= 20) break;  // enough to see the pattern
    }
  }
  std::printf("fuzzed configs: %d accepted, %d rejected with a message\n", accepted, rejected);
  EXPECT_GT(accepted, 100) << "some mutations are harmless (a comment, a value in range)";
  EXPECT_GT(rejected, 1000);
}
