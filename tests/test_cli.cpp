// The boltzflow program end to end: exit codes, messages, JSON output, and
// the same global metrics at 1 and 2 MPI ranks.
#include <gtest/gtest.h>

#include <cmath>

#include "src/io/json.hpp"
#include "tests/cli_helpers.hpp"

using namespace bf;
using bf::test::boltzflow;
using bf::test::run;

TEST(Cli, HelpAndVersion) {
  auto r = run(boltzflow() + " --help");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("check"), std::string::npos);
  r = run(boltzflow() + " check --help");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--target.m"), std::string::npos) << "every key listed";
  EXPECT_NE(r.output.find("[default: gmm4]"), std::string::npos) << "with its default";
  r = run(boltzflow() + " --version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("Kokkos"), std::string::npos);
}

TEST(Cli, BadInputExitsWithTwoAndNamesTheProblem) {
  struct Case {
    std::string args, needle;
  };
  const Case cases[] = {
      {"", "usage"},
      {"frobnicate", "unknown command 'frobnicate'"},
      {"check --target nope", "'nope' is not one of"},
      {"check --samples -5", "--samples must be at least 1"},
      {"check --samples many", "'many' is not an integer"},
      {"check --target.mm 3", "did you mean '--target.m'"},
      {"check --target phi4 --proposal exact", "has no exact sampler"},
      {"check --proposal cauchy", "unknown base distribution 'cauchy'"},
      {"check --target phi4 --target.lambda -1", "out of range"},
      {"check --target gmm", "needs target.dim"},
      {"check --config /nonexistent.ini", "cannot read config file '/nonexistent.ini'"},
      {"bench nonsense", "unknown benchmark 'nonsense'"},
      {"bench train --steps 0", "--steps must be at least 1"},
      {"bench train --model.kind foo", "model.kind"},
      {"bench engine --tangents 40", "tangent counts must be in [0, 17]"},
  };
  for (const auto& c : cases) {
    const auto r = run(boltzflow() + " " + c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(Cli, CheckGivesTheSameGlobalMetricsOnOneAndTwoRanks) {
  const std::string dir = test::temp_dir("check");
  for (const std::string proposal : {"exact", "gauss"}) {
    const std::string a = dir + "/np1-" + proposal + ".json", b = dir + "/np2-" + proposal + ".json";
    const std::string args = " check --target gmm4 --samples 20001 --proposal " + proposal + " --json ";
    auto r1 = run(boltzflow(1) + args + a);
    ASSERT_EQ(r1.code, 0) << r1.output;
    auto r2 = run(boltzflow(2) + args + b);
    ASSERT_EQ(r2.code, 0) << r2.output;
    const Json j1 = Json::parse(test::read_file(a)), j2 = Json::parse(test::read_file(b));
    EXPECT_EQ(j1.at("ranks").get<long long>(), 1);
    EXPECT_EQ(j2.at("ranks").get<long long>(), 2);
    EXPECT_EQ(j2.at("per_rank").size(), 2u);
    EXPECT_EQ(j2.at("per_rank").at(0).at("samples").get<long long>() + j2.at("per_rank").at(1).at("samples").get<long long>(),
              20001);
    for (const char* key : {"reverse_kl", "reverse_ess", "log_z", "log_z_stderr", "forward_kl", "forward_ess",
                            "hausdorff", "mode_coverage_tv"}) {
      const double x = j1.at(key).get<double>(), y = j2.at(key).get<double>();
      EXPECT_LE(std::fabs(x - y), 1e-12 * std::fmax(1.0, std::fabs(x))) << proposal << " " << key;
    }
    if (proposal == "exact") {
      EXPECT_EQ(j2.at("reverse_ess").get<double>(), 1.0);
      EXPECT_EQ(j2.at("reverse_kl").get<double>(), 0.0);
      EXPECT_EQ(j2.at("forward_ess").get<double>(), 1.0);
    } else {
      EXPECT_LT(std::fabs(j2.at("log_z").get<double>()), 3 * j2.at("log_z_stderr").get<double>());
    }
  }
}

// bench train on 2 ranks: real training steps, timed, with the GEMM FLOPs that
// ran and the reference rate measured in the same run.
TEST(Cli, BenchTrainTimesStepsAndCountsTheirFlops) {
  const std::string dir = test::temp_dir("bench");
  const std::string json = dir + "/bench.json";
  const auto r = run(boltzflow(2) + " bench train --steps 3 --warmup 1 --train.batch 64 --model.hidden 16,16 --json " + json);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("s/step"), std::string::npos) << r.output;
  const Json j = Json::parse(test::read_file(json));
  EXPECT_EQ(j.at("ranks").get<long long>(), 2);
  EXPECT_EQ(j.at("steps").get<long long>(), 3);
  EXPECT_GT(j.at("seconds_per_step").get<double>(), 0.0);
  EXPECT_LE(j.at("seconds_per_step_min").get<double>(), j.at("seconds_per_step").get<double>());
  EXPECT_GT(j.at("gflop_per_step").get<double>(), 0.0);
  EXPECT_GT(j.at("reference_gflops").get<double>(), 0.0);
  EXPECT_GT(j.at("ratio").get<double>(), 0.0);
  EXPECT_TRUE(std::isfinite(j.at("last_loss").get<double>()));
}
