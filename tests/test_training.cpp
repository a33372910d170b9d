// Real trainings, short enough for CI: the deformation-trajectory CNF on gmm4
// covers all four modes, the reverse-KL baseline collapses onto fewer
// (Mate & Fleuret, Fig. 1 and Table 1). Every shipped configuration loads,
// builds its model and runs.
#include <gtest/gtest.h>
#include <dirent.h>

#include <cmath>

#include "src/io/json.hpp"
#include "tests/cli_helpers.hpp"

using namespace bf;
using bf::test::boltzflow;
using bf::test::run;

namespace {

// The last evaluation row of a run.
Json final_metrics(const std::string& dir) {
  std::istringstream in(test::read_file(dir + "/metrics.jsonl"));
  std::string line;
  Json last;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line);
    if (j.contains("mode_fractions")) last = j;
  }
  return last;
}

}  // namespace

TEST(Training, DeformationCoversTheModesWhereReverseKlCollapses) {
  const std::string d = test::temp_dir("gmm4");
  // The built-in defaults (gmm4, CNF, 10^3 steps at lr 3e-3), with a smaller
  // batch and 20 RK4 steps to keep CI short; 2 ranks.
  const std::string common = " --train.batch 128 --model.integration_steps 20 --run.seed 2 --eval.forward false";
  auto def = run(boltzflow(2) + " train --out " + d + "/deformation --train.loss deformation" + common);
  ASSERT_EQ(def.code, 0) << def.output;
  auto rkl = run(boltzflow(2) + " train --out " + d + "/reverse_kl --train.loss reverse_kl" + common);
  ASSERT_EQ(rkl.code, 0) << rkl.output;
  const Json a = final_metrics(d + "/deformation"), b = final_metrics(d + "/reverse_kl");
  ASSERT_EQ(a.at("mode_fractions").size(), 4u);
  // Deformation loss: mass on all four modes, near their weights, samples at every mode.
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_GT(a.at("mode_fractions").at(k).get<double>(), 0.18) << "mode " << k << "\n" << def.output;
    EXPECT_LT(a.at("mode_fractions").at(k).get<double>(), 0.32) << "mode " << k;
  }
  EXPECT_LT(a.at("mode_coverage_tv").get<double>(), 0.06);
  EXPECT_LT(a.at("hausdorff").get<double>(), 1.5);
  // Reverse KL: at least one mode lost, far from the weights, far from some mode.
  int held = 0;
  for (std::size_t k = 0; k < 4; ++k) held += b.at("mode_fractions").at(k).get<double>() > 0.05 ? 1 : 0;
  EXPECT_LT(held, 4) << rkl.output;
  EXPECT_GT(b.at("mode_coverage_tv").get<double>(), 0.15);
  EXPECT_GT(b.at("hausdorff").get<double>(), a.at("hausdorff").get<double>());
}

TEST(Training, NhfRecoversTheNineModesOfGmm9) {
  const std::string d = test::temp_dir("gmm9");
  for (const std::string kinetic : {"mlp", "fixed"}) {
    auto r = run(boltzflow(2) + " train --out " + d + "/" + kinetic +
                 " --model.kind nhf --train.loss elbo --target.name gmm9 --model.kinetic " + kinetic +
                 " --model.hidden 32,32 --model.activation softplus --base.kind softuniform --train.batch 512"
                 " --train.steps 600 --train.lr 2e-3 --eval.samples 4096");
    ASSERT_EQ(r.code, 0) << r.output;
    const Json m = final_metrics(d + "/" + kinetic);
    ASSERT_EQ(m.at("mode_fractions").size(), 9u);
    for (std::size_t k = 0; k < 9; ++k) {
      EXPECT_GT(m.at("mode_fractions").at(k).get<double>(), 0.05) << kinetic << " mode " << k << "\n" << r.output;
      EXPECT_LT(m.at("mode_fractions").at(k).get<double>(), 0.18) << kinetic << " mode " << k;
    }
    EXPECT_LT(m.at("hausdorff").get<double>(), 0.5) << kinetic;
    EXPECT_LT(m.at("mode_coverage_tv").get<double>(), 0.12) << kinetic;
    // The importance weights are proper: log Z of the normalised mixture is 0 within its error.
    EXPECT_LT(std::fabs(m.at("log_z").get<double>()), 4 * m.at("log_z_stderr").get<double>() + 0.02) << kinetic;
    EXPECT_TRUE(test::read_file(d + "/" + kinetic + "/potential.h5").size() > 0) << "the potential map";
  }
}

TEST(Training, NhfSupernovaPosteriorMeansMatchQuadrature) {
  const std::string d = test::temp_dir("supernova");
  auto r = run(boltzflow(2) + " train --out " + d +
               "/run --model.kind nhf --train.loss reverse_kl --target.name supernova --target.quadrature_grid 500"
               " --model.kinetic fixed --model.hidden 32,32 --model.activation softplus --base.kind softuniform"
               " --model.precision double --train.batch 256 --train.steps 600 --eval.samples 8000");
  ASSERT_EQ(r.code, 0) << r.output;
  const Json obs = final_metrics(d + "/run").at("observables");
  const Json om = obs.at("Omega_m"), h = obs.at("h");
  EXPECT_NEAR(om.at("mean").get<double>(), om.at("exact_mean").get<double>(), 0.03) << r.output;
  EXPECT_NEAR(h.at("mean").get<double>(), h.at("exact_mean").get<double>(), 0.01) << r.output;
  EXPECT_NEAR(om.at("mean_reweighted").get<double>(), om.at("exact_mean").get<double>(), 0.03);
  EXPECT_NEAR(h.at("mean_reweighted").get<double>(), h.at("exact_mean").get<double>(), 0.01);
  EXPECT_NEAR(h.at("sd_reweighted").get<double>(), h.at("exact_sd").get<double>(), 0.5 * h.at("exact_sd").get<double>());
}

TEST(Training, EveryShippedConfigurationRuns) {
  const std::string dir = BOLTZFLOW_SOURCE_DIR "/jobs/configs";
  DIR* dp = opendir(dir.c_str());
  ASSERT_NE(dp, nullptr);
  std::vector<std::string> configs;
  while (dirent* e = readdir(dp)) {
    const std::string n = e->d_name;
    if (n.size() > 4 && n.substr(n.size() - 4) == ".ini") configs.push_back(n);
  }
  closedir(dp);
  EXPECT_GE(configs.size(), 22u);
  const std::string d = test::temp_dir("configs");
  for (const auto& c : configs) {
    // Zero steps: the model is built, initialised, checkpointed and evaluated.
    auto r = run(boltzflow() + " train --config " + dir + "/" + c + " --out " + d + "/" + c +
                 " --train.steps 0 --eval.samples 8 --eval.batch 8 --eval.forward false --train.batch 8");
    EXPECT_EQ(r.code, 0) << c << "\n" << r.output;
  }
}
