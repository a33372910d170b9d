// The runner end to end, through the real program under real MPI: bitwise
// reproducibility, rank-count invariance, exact resume, SIGTERM, a checkpoint
// killed while being written, the non-finite policy, bad input, and files
// that standard tools read.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "src/run/train_state.hpp"
#include "src/io/hdf5_util.hpp"
#include "src/io/json.hpp"
#include "src/run/potential_map.hpp"
#include "src/run/run_dir.hpp"
#include "tests/cli_helpers.hpp"

using namespace bf;
using bf::test::boltzflow;
using bf::test::run;

namespace {

// A small real training: the affine flow on the asymmetric mixture.
const std::string kSmall =
    " --model.kind affine --train.loss reverse_kl --model.precision double --train.schedule cosine "
    "--target.name gmm2asym --train.batch 64 --train.lr 0.02 --run.eval_every 10 --eval.samples 512 "
    "--run.checkpoint_every 5";

// A slower one (for signals): the affine flow on the 16-site φ⁴ ring.
const std::string kSmallPhi4 =
    " --model.kind affine --train.loss reverse_kl --model.precision double --train.schedule cosine "
    "--target.name phi4 --train.lr 0.02 --eval.samples 512 --run.checkpoint_every 500";

test::Result train(int ranks, const std::string& dir, const std::string& args) {
  return run(boltzflow(ranks) + " train --out " + dir + kSmall + " " + args);
}

/// The exit status a background shell writes with `echo $? > path`: waits (up to 30 s) for the
/// whole line, since the shell creates the file before it writes the number; −1 if none came.
int wait_for_exit_status(const std::string& path) {
  for (int i = 0; i < 600; ++i) {
    const std::string line = file_exists(path) ? test::read_file(path) : std::string();
    if (line.find('\n') != std::string::npos) return std::stoi(line);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

struct Row {
  long long step;
  double loss;
};
std::vector<Row> loss_rows(const std::string& dir, std::vector<long long>* all_steps = nullptr) {
  std::vector<Row> rows;
  std::istringstream in(test::read_file(dir + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line);
    if (!j.contains("step")) continue;
    if (all_steps) all_steps->push_back(j.at("step").get<long long>());
    if (j.contains("loss")) rows.push_back({j.at("step").get<long long>(), j.at("loss").get<double>()});
  }
  return rows;
}

void expect_same_state(const TrainState& a, const TrainState& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.adam_steps, b.adam_steps);
  EXPECT_EQ(a.lr_factor, b.lr_factor);
  ASSERT_EQ(a.parameters.size(), b.parameters.size());
  for (std::size_t i = 0; i < a.parameters.size(); ++i) {
    ASSERT_EQ(a.parameters[i], b.parameters[i]) << "parameter " << i;
    ASSERT_EQ(a.adam_m[i], b.adam_m[i]) << "first moment " << i;
    ASSERT_EQ(a.adam_v[i], b.adam_v[i]) << "second moment " << i;
  }
}

/// Two runs of one configuration on different rank counts: `steps` loss rows each, equal to the
/// allreduce's rounding, 1e-10 (floor + |loss|).
void expect_losses_agree(const std::string& a, const std::string& b, std::size_t steps, double floor = 0.0) {
  const auto ra = loss_rows(a), rb = loss_rows(b);
  ASSERT_EQ(ra.size(), steps) << a;
  ASSERT_EQ(rb.size(), steps) << b;
  for (std::size_t i = 0; i < ra.size(); ++i)
    EXPECT_LE(std::fabs(ra[i].loss - rb[i].loss), 1e-10 * (floor + std::fabs(ra[i].loss))) << "step " << ra[i].step;
}

void expect_unique_steps(const std::string& dir) {
  std::vector<long long> steps;
  loss_rows(dir, &steps);
  std::vector<long long> sorted = steps;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_TRUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end()) << dir << ": duplicated steps";
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end())) << dir << ": steps out of order";
}

}  // namespace

TEST(Runner, SameRanksSameSeedIsBitwiseReproducible) {
  const std::string d = test::temp_dir("repro");
  auto a = train(2, d + "/a", "--train.steps 30");
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = train(2, d + "/b", "--train.steps 30");
  ASSERT_EQ(b.code, 0) << b.output;
  expect_same_state(load_state(d + "/a/checkpoint.h5"), load_state(d + "/b/checkpoint.h5"));
  const auto ra = loss_rows(d + "/a"), rb = loss_rows(d + "/b");
  ASSERT_EQ(ra.size(), 30u);
  for (std::size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i].loss, rb[i].loss);
}

TEST(Runner, OneAndTwoRanksAgree) {
  const std::string d = test::temp_dir("ranks");
  auto a = train(1, d + "/np1", "--train.steps 30");
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = train(2, d + "/np2", "--train.steps 30");
  ASSERT_EQ(b.code, 0) << b.output;
  expect_losses_agree(d + "/np1", d + "/np2", 30);
  // The same checkpoint sampled on 1 and 2 ranks gives identical samples.
  auto s1 = run(boltzflow(1) + " sample --run " + d + "/np1 --samples 1001 --out " + d + "/s1.h5");
  ASSERT_EQ(s1.code, 0) << s1.output;
  auto s2 = run(boltzflow(2) + " sample --run " + d + "/np1 --samples 1001 --out " + d + "/s2.h5");
  ASSERT_EQ(s2.code, 0) << s2.output;
  h5::Handle f1 = h5::open_file(d + "/s1.h5"), f2 = h5::open_file(d + "/s2.h5");
  for (const char* name : {"samples", "log_q", "log_w"}) {
    const auto x1 = h5::read_array(f1, name), x2 = h5::read_array(f2, name);
    ASSERT_EQ(x1.size(), x2.size());
    for (std::size_t i = 0; i < x1.size(); ++i) ASSERT_EQ(x1[i], x2[i]) << name << " " << i;
  }
}

// An NHF trained on its data set in epochs (train.minibatch = epochs) on 1 and
// 2 ranks: the same minibatches, so the same losses up to the allreduce's order.
TEST(Runner, EpochMinibatchesAgreeOnOneAndTwoRanks) {
  const std::string d = test::temp_dir("epochs");
  const std::string nhf =
      " --model.kind nhf --train.loss elbo --target.name gmm9 --model.hidden 8 --model.leapfrog_steps 2"
      " --model.precision double --train.minibatch epochs --train.dataset_size 100 --train.batch 24"
      " --train.steps 12 --run.log_every 1 --run.eval_every 0 --eval.samples 256";
  auto a = run(boltzflow(1) + " train --out " + d + "/np1" + nhf);
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = run(boltzflow(2) + " train --out " + d + "/np2" + nhf);
  ASSERT_EQ(b.code, 0) << b.output;
  expect_losses_agree(d + "/np1", d + "/np2", 12);
  auto bad = run(boltzflow() + " train --out " + d + "/big" + nhf + " --train.batch 101");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("train.minibatch = epochs needs train.batch (101) at most train.dataset_size (100)"),
            std::string::npos)
      << bad.output;
}

// Hamiltonian score matching, a min-max model with two Adams (the force's every third
// step): a resumed run is the uninterrupted one bit for bit, 1 and 2 ranks agree, and the
// figures are the score error's (train, evaluate, the batch table); it has no samples.
TEST(Runner, HsmResumesExactlyAgreesAcrossRanksAndReportsItsScoreError) {
  const std::string d = test::temp_dir("hsm");
  const std::string hsm =
      " --model.kind hsm --train.loss hsm --target.name gmm9 --model.hidden 8 --model.kernels 2"
      " --model.leapfrog_steps 3 --train.inner_steps 2 --model.precision double --train.dataset_size 100"
      " --train.batch 24 --train.steps 14 --run.log_every 1 --run.checkpoint_every 5 --eval.samples 300";
  auto full = run(boltzflow(2) + " train --out " + d + "/full" + hsm);
  ASSERT_EQ(full.code, 0) << full.output;
  EXPECT_NE(full.output.find("score error E|F - grad log pi|^2 / E|grad log pi|^2 = "), std::string::npos) << full.output;
  auto first = run(boltzflow(2) + " train --out " + d + "/split" + hsm + " --run.stop_at 7");
  ASSERT_EQ(first.code, 0) << first.output;
  auto second = run(boltzflow(2) + " train --out " + d + "/split" + hsm + " --resume");
  ASSERT_EQ(second.code, 0) << second.output;
  expect_same_state(load_state(d + "/full/checkpoint.h5"), load_state(d + "/split/checkpoint.h5"));
  auto one = run(boltzflow(1) + " train --out " + d + "/np1" + hsm);
  ASSERT_EQ(one.code, 0) << one.output;
  expect_losses_agree(d + "/np1", d + "/full", 14, 1.0);  // the HSM loss crosses 0
  // evaluate: the score error, the same on 1 and 2 ranks (the same exact samples by global index).
  auto e1 = run(boltzflow(1) + " evaluate --run " + d + "/full --json " + d + "/e1.json");
  ASSERT_EQ(e1.code, 0) << e1.output;
  auto e2 = run(boltzflow(2) + " evaluate --run " + d + "/full --json " + d + "/e2.json");
  ASSERT_EQ(e2.code, 0) << e2.output;
  const Json j1 = Json::parse(test::read_file(d + "/e1.json")), j2 = Json::parse(test::read_file(d + "/e2.json"));
  const double s1 = j1.at("score_error").get<double>(), s2 = j2.at("score_error").get<double>();
  EXPECT_GT(s1, 0.0);
  EXPECT_NEAR(s1, s2, 1e-12 * s1);
  EXPECT_GT(j1.at("score_error_stderr").get<double>(), 0.0);
  EXPECT_EQ(j1.at("score_samples").get<long long>(), 300);
  EXPECT_FALSE(j1.contains("reverse_ess")) << "a score model has no sampler figures";
  auto table = run(boltzflow(1) + " evaluate --runs '" + d + "/full' --table " + d + "/t.csv");
  ASSERT_EQ(table.code, 0) << table.output;
  const std::string csv = test::read_file(d + "/t.csv");
  EXPECT_NE(csv.find(",score_error,score_error_stderr,"), std::string::npos) << csv;
  auto sample = run(boltzflow(1) + " sample --run " + d + "/full --samples 10 --out " + d + "/s.h5");
  EXPECT_EQ(sample.code, 2) << sample.output;
  EXPECT_NE(sample.output.find("learns a score, not a sampler"), std::string::npos) << sample.output;
  EXPECT_FALSE(std::filesystem::exists(d + "/s.h5"));
}

// The equivariant NHF: its multipliers (model state) resume exactly and are the same on 1 and
// 2 ranks (Ĉ reduced over the global batch); the evaluation's symmetry figures; a prior that is
// not rotation invariant is refused before anything is written; the constraint at the data's
// orbits is rank invariant; a generator file edited before a resume is refused.
TEST(Runner, SymmetricNhfResumesExactlyAgreesAcrossRanksAndRefusesANonInvariantPrior) {
  const std::string d = test::temp_dir("ehf");
  const std::string ehf =
      " --model.kind nhf --train.loss elbo --target.name ring --base.kind gauss --model.symmetry so2"
      " --model.symmetry_tolerance 1e-4 --model.symmetry_rate 5 --model.symmetry_warmup 0 --model.hidden 8 --model.activation softplus"
      " --model.leapfrog_steps 2 --model.precision double --train.dataset_size 100 --train.batch 24 --train.steps 14"
      " --train.lr 0.01 --run.log_every 1 --run.checkpoint_every 5 --eval.samples 300 --eval.momentum_samples 8";
  auto full = run(boltzflow(2) + " train --out " + d + "/full" + ehf);
  ASSERT_EQ(full.code, 0) << full.output;
  EXPECT_NE(full.output.find("symmetry constraint E[{g_0, H}^2] = "), std::string::npos) << full.output;
  EXPECT_NE(full.output.find("held-out log-likelihood"), std::string::npos) << full.output;
  auto first = run(boltzflow(2) + " train --out " + d + "/split" + ehf + " --run.stop_at 7");
  ASSERT_EQ(first.code, 0) << first.output;
  auto second = run(boltzflow(2) + " train --out " + d + "/split" + ehf + " --resume");
  ASSERT_EQ(second.code, 0) << second.output;
  const TrainState a = load_state(d + "/full/checkpoint.h5"), b = load_state(d + "/split/checkpoint.h5");
  expect_same_state(a, b);
  ASSERT_EQ(a.model_state.size(), 7u);  // λ, C_ma, started, the generator's 2 x 2 entries
  EXPECT_EQ(a.model_state, b.model_state);
  EXPECT_NE(a.model_state[0], 1.0) << "the multiplier moved";
  auto one = run(boltzflow(1) + " train --out " + d + "/np1" + ehf);
  ASSERT_EQ(one.code, 0) << one.output;
  expect_losses_agree(d + "/np1", d + "/full", 14);
  // The multipliers, row by row: the same on 1 and 2 ranks, bitwise on resume.
  auto lambdas = [](const std::string& dir) {
    std::vector<double> l;
    std::istringstream in(test::read_file(dir + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      const Json j = Json::parse(line);
      if (j.contains("symmetry_lambda")) l.push_back(j.at("symmetry_lambda").get<double>());
    }
    return l;
  };
  const auto lf = lambdas(d + "/full"), ls = lambdas(d + "/split"), l1 = lambdas(d + "/np1");
  ASSERT_EQ(lf.size(), 14u);
  EXPECT_EQ(lf, ls);
  for (std::size_t i = 0; i < lf.size(); ++i) EXPECT_NEAR(lf[i], l1[i], 1e-10 * lf[i]) << "step " << i;
  // evaluate: the figures, rank-invariant.
  auto e1 = run(boltzflow(1) + " evaluate --run " + d + "/full --json " + d + "/e1.json");
  ASSERT_EQ(e1.code, 0) << e1.output;
  auto e2 = run(boltzflow(2) + " evaluate --run " + d + "/full --json " + d + "/e2.json");
  ASSERT_EQ(e2.code, 0) << e2.output;
  const Json j1 = Json::parse(test::read_file(d + "/e1.json")), j2 = Json::parse(test::read_file(d + "/e2.json"));
  for (const char* k : {"symmetry_constraint", "test_log_likelihood", "angular_tv"}) {
    ASSERT_TRUE(j1.contains(k)) << k;
    const double x1 = j1.at(k).get<double>(), x2 = j2.at(k).get<double>();
    EXPECT_NEAR(x1, x2, 1e-10 * std::fabs(x1)) << k;
  }
  EXPECT_GT(j1.at("symmetry_constraint").get<double>(), 0.0);
  EXPECT_LT(j1.at("test_log_likelihood").get<double>(), 0.0);
  EXPECT_GT(j1.at("test_log_likelihood_stderr").get<double>(), 0.0);
  EXPECT_EQ(j1.at("angular_moments").size(), 4u);
  auto table = run(boltzflow(1) + " evaluate --runs '" + d + "/full' --table " + d + "/t.csv");
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_NE(test::read_file(d + "/t.csv").find(",test_log_likelihood,test_log_likelihood_stderr,angular_tv,symmetry_constraint,"
                                               "symmetry_constraint_stderr,score_error,"),
            std::string::npos);
  // A soft-uniform prior is not rotation invariant: exit 2, named, nothing written.
  for (const std::string prior : {" --base.kind softuniform", " --base.kind gengauss --base.power 3"}) {
    auto bad = run(boltzflow(1) + " train --out " + d + "/bad" + ehf + prior);
    EXPECT_EQ(bad.code, 2) << bad.output;
    EXPECT_NE(bad.output.find("is not invariant under the generators"), std::string::npos) << bad.output;
    EXPECT_FALSE(std::filesystem::exists(d + "/bad/checkpoint.h5"));
  }
  // A generator from a file, the constraint at the data's orbits: 1 and 2 ranks agree (the group
  // elements are keyed by the global sample index); a resume after the file was edited is refused
  // (exit 2, named) and leaves the checkpoint as it was.
  std::ofstream(d + "/gen.txt") << "0 -1\n1 0\n";
  const std::string orbit = " --model.symmetry matrix:" + d + "/gen.txt --model.symmetry_points orbit";
  auto o2 = run(boltzflow(2) + " train --out " + d + "/orbit2" + ehf + orbit);
  ASSERT_EQ(o2.code, 0) << o2.output;
  EXPECT_NE(o2.output.find("moved along its orbits"), std::string::npos) << o2.output;
  auto o1 = run(boltzflow(1) + " train --out " + d + "/orbit1" + ehf + orbit);
  ASSERT_EQ(o1.code, 0) << o1.output;
  expect_losses_agree(d + "/orbit1", d + "/orbit2", 14);
  EXPECT_NE(loss_rows(d + "/orbit1")[3].loss, loss_rows(d + "/full")[3].loss) << "orbit points change the penalty";
  auto part = run(boltzflow(1) + " train --out " + d + "/edited" + ehf + orbit + " --run.stop_at 7");
  ASSERT_EQ(part.code, 0) << part.output;
  const std::string saved = test::read_file(d + "/edited/checkpoint.h5");
  std::ofstream(d + "/gen.txt") << "0 -1.5\n1.5 0\n";
  auto resumed = run(boltzflow(1) + " train --out " + d + "/edited" + ehf + orbit + " --resume");
  EXPECT_EQ(resumed.code, 2) << resumed.output;
  EXPECT_NE(resumed.output.find("differ from those the run was trained with by up to 0.5"), std::string::npos)
      << resumed.output;
  EXPECT_EQ(test::read_file(d + "/edited/checkpoint.h5"), saved);
  auto wrong = run(boltzflow(1) + " train --out " + d + "/bad2" + ehf + " --model.kind cnf --train.loss reverse_kl");
  EXPECT_EQ(wrong.code, 2) << wrong.output;
  EXPECT_NE(wrong.output.find("model.symmetry = so2 needs model.kind = nhf"), std::string::npos) << wrong.output;
}

TEST(Runner, ResumeIsBitwiseExact) {
  const std::string d = test::temp_dir("resume");
  auto full = train(2, d + "/full", "--train.steps 40");
  ASSERT_EQ(full.code, 0) << full.output;
  auto first = train(2, d + "/split", "--train.steps 40 --run.stop_at 17");
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_EQ(load_state(d + "/split/checkpoint.h5").step, 17);
  auto second = train(2, d + "/split", "--train.steps 40 --resume");
  ASSERT_EQ(second.code, 0) << second.output;
  expect_same_state(load_state(d + "/full/checkpoint.h5"), load_state(d + "/split/checkpoint.h5"));
  expect_unique_steps(d + "/split");
  const auto ra = loss_rows(d + "/full"), rb = loss_rows(d + "/split");
  ASSERT_EQ(ra.size(), rb.size());
  for (std::size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i].loss, rb[i].loss) << "step " << ra[i].step;
  // Resuming a finished run changes nothing.
  auto again = train(2, d + "/split", "--train.steps 40 --resume");
  EXPECT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("already complete"), std::string::npos);
  expect_unique_steps(d + "/split");
}

TEST(Runner, SigtermCheckpointsAndResumesIdentically) {
  const std::string d = test::temp_dir("sigterm");
  const std::string slow = "--train.steps 2500 --target.shape 16 --train.batch 2048 --run.eval_every 0";
  // Start a 2-rank run in the background and wait until it is training.
  const std::string cmd = boltzflow(2) + " train --out " + d + "/run" + kSmallPhi4 + " " + slow + " > " + d +
                          "/log.txt 2>&1; echo $? > " + d + "/exit_code";
  ASSERT_EQ(std::system(("(" + cmd + ") &").c_str()), 0);
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string m = test::read_file(d + "/run/metrics.jsonl");
    started = std::count(m.begin(), m.end(), '\n') >= 50;
  }
  ASSERT_TRUE(started) << test::read_file(d + "/log.txt");
  // Signal the ranks themselves, as SLURM does.
  run("pkill -TERM -f '^" + std::string(BOLTZFLOW_BINARY) + " train --out " + d + "/run'");
  EXPECT_EQ(wait_for_exit_status(d + "/exit_code"), 3) << test::read_file(d + "/log.txt");
  const TrainState stopped = load_state(d + "/run/checkpoint.h5");
  EXPECT_GT(stopped.step, 0);
  EXPECT_LT(stopped.step, 2500) << "the signal arrived mid-training";
  auto resumed = run(boltzflow(2) + " train --out " + d + "/run" + kSmallPhi4 + " " + slow + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  auto full = run(boltzflow(2) + " train --out " + d + "/full" + kSmallPhi4 + " " + slow);
  ASSERT_EQ(full.code, 0) << full.output;
  expect_same_state(load_state(d + "/full/checkpoint.h5"), load_state(d + "/run/checkpoint.h5"));
  expect_unique_steps(d + "/run");
}

TEST(Runner, CheckpointKilledWhileWritingLeavesThePreviousOne) {
  const std::string d = test::temp_dir("torn");
  // Die half-way through the second checkpoint write (step 5).
  auto killed = run("BOLTZFLOW_FAULT_INJECT=checkpoint-write:2 " + boltzflow(1) + " train --out " + d + "/run" +
                    kSmall + " --train.steps 20");
  EXPECT_NE(killed.code, 0);
  EXPECT_TRUE(file_exists(d + "/run/checkpoint.h5.tmp")) << "the torn file is the temporary one";
  EXPECT_FALSE(is_checkpoint(d + "/run/checkpoint.h5.tmp"));
  const TrainState previous = load_state(d + "/run/checkpoint.h5");
  EXPECT_EQ(previous.step, 0);
  auto resumed = train(1, d + "/run", "--train.steps 20 --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  auto full = train(1, d + "/full", "--train.steps 20");
  ASSERT_EQ(full.code, 0) << full.output;
  expect_same_state(load_state(d + "/full/checkpoint.h5"), load_state(d + "/run/checkpoint.h5"));
  expect_unique_steps(d + "/run");
}

TEST(Runner, NonFiniteStepRollsBackAndLowersTheLearningRate) {
  const std::string d = test::temp_dir("nan");
  auto r = run("BOLTZFLOW_FAULT_INJECT=nan-at-step:7 " + boltzflow(2) + " train --out " + d + "/run" + kSmall +
               " --train.steps 20 --train.snapshot_every 5");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("rolling back to step 5"), std::string::npos) << r.output;
  const std::string m = test::read_file(d + "/run/metrics.jsonl");
  EXPECT_NE(m.find("\"event\":\"nonfinite\""), std::string::npos);
  expect_unique_steps(d + "/run");
  EXPECT_EQ(loss_rows(d + "/run").size(), 20u);
  EXPECT_EQ(load_state(d + "/run/checkpoint.h5").lr_factor, 0.5);
  // A learning rate that diverges every time: the run stops, exit 1, the last good checkpoint intact.
  auto bad = run(boltzflow(2) + " train --out " + d + "/diverge" + kSmall +
                 " --train.steps 50 --train.lr 1e4 --train.nan_max_retries 2 --run.checkpoint_every 1000");
  EXPECT_EQ(bad.code, 1) << bad.output;
  EXPECT_NE(bad.output.find("consecutive non-finite steps"), std::string::npos) << bad.output;
  const TrainState good = load_state(d + "/diverge/checkpoint.h5");
  EXPECT_EQ(good.step, 0);
  for (double p : good.parameters) EXPECT_TRUE(std::isfinite(p));
}

TEST(Runner, BadInputExitsWithTwoAndOverwritesNothing) {
  const std::string d = test::temp_dir("bad");
  auto ok = train(1, d + "/run", "--train.steps 10");
  ASSERT_EQ(ok.code, 0) << ok.output;
  const std::string before_ckpt = test::read_file(d + "/run/checkpoint.h5");
  const std::string before_metrics = test::read_file(d + "/run/metrics.jsonl");
  {
    std::ofstream f(d + "/typo.ini");
    f << "[train]\nstesp = 10\n";
    std::ofstream g(d + "/malformed.ini");
    g << "[train]\nbatch = lots\n";
    std::ofstream h(d + "/foreign.h5");
    h << "not hdf5 at all";
  }
  {
    h5::Handle f = h5::create_file(d + "/other.h5");
    h5::write_string(f, "hello", "world");
  }
  // A truncated copy of a real checkpoint.
  run("head -c 2000 " + d + "/run/checkpoint.h5 > " + d + "/truncated.h5");
  struct Case {
    std::string args, needle;
  };
  const Case cases[] = {
      {"train --config " + d + "/typo.ini --out " + d + "/x1", "did you mean 'train.steps'"},
      {"train --config " + d + "/malformed.ini --out " + d + "/x2", "'lots' is not an integer"},
      {"train --train.batch -5 --out " + d + "/x3", "train.batch = -5 is out of range"},
      {"train --target.name gmm5 --out " + d + "/x4", "'gmm5' is not one of"},
      {"train --train.lrr 0.1 --out " + d + "/x5", "did you mean '--train.lr'"},
      {"train --config " + d + "/missing.ini --out " + d + "/x6", "cannot read config file"},
      {"train --out " + d + "/run" + kSmall + " --train.steps 10", "already holds a run"},
      {"train --out " + d + "/run" + kSmall + " --train.steps 10 --train.lr 0.5 --resume", "train.lr"},
      {"train --out " + d + "/empty --resume", "no checkpoint to resume"},
      {"evaluate --checkpoint " + d + "/missing.h5", "does not exist"},
      {"evaluate --checkpoint " + d + "/truncated.h5", "truncated"},
      {"evaluate --checkpoint " + d + "/foreign.h5", "not a readable HDF5 file"},
      {"evaluate --checkpoint " + d + "/other.h5", "not a boltzflow checkpoint"},
      {"evaluate --run " + d + "/run --checkpoint " + d + "/run/checkpoint.h5", "exactly one"},
      {"sample --run " + d + "/run --samples 10 --out " + d + "/run/metrics.jsonl", "exists"},
      {"inspect " + d + "/foreign.h5", "not an HDF5 file"},
  };
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const auto& c = cases[i];
    // Every case directly; the file cases also on 2 ranks, where rank 0 decides for all.
    for (int ranks : {0, 2}) {
      if (ranks == 2 && i < 6) continue;
      const auto r = run(boltzflow(ranks) + " " + c.args);
      EXPECT_EQ(r.code, 2) << c.args << "\n" << r.output;
      EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
    }
  }
  // A global batch smaller than the rank count: refused before anything is written.
  {
    const auto r = run(boltzflow(2) + " train --out " + d + "/tiny" + kSmall + " --train.batch 1 --train.steps 3");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("train.batch = 1 is smaller than the number of ranks (2)"), std::string::npos) << r.output;
    EXPECT_FALSE(dir_exists(d + "/tiny")) << "nothing written";
  }
  // --out at a different run (a config.ini that differs), without --resume.
  make_dirs(d + "/other_run");
  {
    std::ofstream f(d + "/other_run/config.ini");
    f << "[target]\nname = gmm9\n";
  }
  auto r = run(boltzflow(1) + " train --out " + d + "/other_run --train.steps 3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("points at a different run"), std::string::npos) << r.output;
  EXPECT_EQ(test::read_file(d + "/other_run/config.ini"), "[target]\nname = gmm9\n");
  EXPECT_EQ(test::read_file(d + "/run/checkpoint.h5"), before_ckpt) << "nothing overwritten";
  EXPECT_EQ(test::read_file(d + "/run/metrics.jsonl"), before_metrics) << "nothing overwritten";
}

// One run per directory: a second training or a --resume while another process
// holds the directory exits 2 naming the holder and changes nothing; a killed
// holder leaves no lock behind.
TEST(Runner, OneRunPerDirectoryAndNoStaleLock) {
  const std::string d = test::temp_dir("lock");
  ASSERT_EQ(train(1, d + "/run", "--train.steps 5").code, 0);
  const std::string ckpt = test::read_file(d + "/run/checkpoint.h5");
  const std::string metrics = test::read_file(d + "/run/metrics.jsonl");
  const std::string config = test::read_file(d + "/run/config.ini");
  {
    RunLock held(d + "/run");  // this test process holds it
    ASSERT_TRUE(held.held());
    for (int ranks : {0, 2}) {
      for (const std::string& extra : {std::string("--train.steps 10 --resume"), std::string("--run.seed 2")}) {
        const auto r = train(ranks, d + "/run", extra);
        EXPECT_EQ(r.code, 2) << extra << "\n" << r.output;
        EXPECT_NE(r.output.find("in use by another boltzflow process"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find(" " + std::to_string(static_cast<long>(getpid()))), std::string::npos)
            << "names the holder's pid: " << r.output;
      }
    }
    // A process that cannot take the lock truncates nothing, not even the record.
    EXPECT_NE(test::read_file(d + "/run/.lock").find(std::to_string(static_cast<long>(getpid()))), std::string::npos);
  }
  EXPECT_EQ(test::read_file(d + "/run/checkpoint.h5"), ckpt) << "nothing changed";
  EXPECT_EQ(test::read_file(d + "/run/metrics.jsonl"), metrics) << "nothing changed";
  EXPECT_EQ(test::read_file(d + "/run/config.ini"), config) << "nothing changed";
  // Released: the run resumes.
  const auto resumed = train(1, d + "/run", "--train.steps 10 --resume");
  EXPECT_EQ(resumed.code, 0) << resumed.output;

  // Two trainings started into one fresh directory: the second is refused
  // while the first runs, and the first, SIGKILLed, leaves no lock.
  const std::string slow = "--train.steps 100000 --target.shape 16 --train.batch 2048 --run.eval_every 0";
  const std::string first = std::string(BOLTZFLOW_BINARY) + " train --out " + d + "/two" + kSmallPhi4 + " " + slow;
  ASSERT_EQ(std::system(("(" + first + " > " + d + "/log.txt 2>&1; echo $? > " + d + "/exit_code) &").c_str()), 0);
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    started = test::read_file(d + "/two/metrics.jsonl").find("\"step\"") != std::string::npos;
  }
  ASSERT_TRUE(started) << test::read_file(d + "/log.txt");
  const std::string first_config = test::read_file(d + "/two/config.ini");
  const auto second = run(boltzflow(0) + " train --out " + d + "/two" + kSmallPhi4 + " " + slow + " --run.seed 2");
  EXPECT_EQ(second.code, 2) << second.output;
  EXPECT_NE(second.output.find("in use by another boltzflow process"), std::string::npos) << second.output;
  EXPECT_EQ(test::read_file(d + "/two/config.ini"), first_config) << "the second run wrote nothing";
  run("pkill -KILL -f '^" + std::string(BOLTZFLOW_BINARY) + " train --out " + d + "/two'");
  EXPECT_EQ(wait_for_exit_status(d + "/exit_code"), 137) << test::read_file(d + "/log.txt");
  RunLock after(d + "/two");
  EXPECT_TRUE(after.held()) << "a SIGKILLed holder leaves no lock behind";
}

// Flow-based MCMC end to end: the chains are the same on 1 and 2 ranks, and
// what the file holds is a chain (each step on its own or the previous state).
// An NHF's figures through the program: the phase-space ones under their own
// names, the marginal estimate from K momenta per sample the same on 1 and 2
// ranks, below the phase-space KL (a lower against an upper bound of the same
// KL) and rising with K; the forward KL from above.
TEST(Runner, NhfReportsPhaseSpaceAndMarginalFiguresRankInvariantly) {
  const std::string d = test::temp_dir("marginal");
  auto t = run(boltzflow(1) + " train --out " + d + "/run --model.kind nhf --train.loss elbo --target.name gmm9"
               " --model.hidden 8 --model.leapfrog_steps 2 --model.precision double --train.dataset_size 200"
               " --train.batch 32 --train.steps 30 --run.eval_every 0 --eval.samples 300 --eval.momentum_samples 4");
  ASSERT_EQ(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("phase-space reverse_kl"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("marginal estimate (K = 4 momenta per sample)"), std::string::npos) << t.output;
  auto eval = [&](int ranks, int K, const std::string& name) {
    auto r = run(boltzflow(ranks) + " evaluate --run " + d + "/run --eval.momentum_samples " + std::to_string(K) +
                 " --json " + d + "/" + name);
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("are of the flow on phase space (q, p)"), std::string::npos) << r.output;
    return Json::parse(test::read_file(d + "/" + name));
  };
  const Json a = eval(1, 64, "np1.json"), b = eval(2, 64, "np2.json"), one = eval(1, 1, "k1.json");
  EXPECT_FALSE(a.contains("reverse_kl"));
  EXPECT_FALSE(a.contains("reverse_ess"));
  ASSERT_TRUE(a.contains("phase_space_reverse_kl"));
  EXPECT_EQ(a.at("momentum_samples").get<int>(), 64);
  for (const char* k : {"marginal_reverse_kl", "marginal_reverse_ess", "marginal_forward_kl", "marginal_forward_ess",
                        "phase_space_reverse_kl", "log_z"}) {
    const double x = a.at(k).get<double>(), y = b.at(k).get<double>();
    EXPECT_TRUE(std::isfinite(x)) << k;
    EXPECT_NEAR(x, y, 1e-10 * std::fmax(1.0, std::fabs(x))) << k << ": 1 and 2 ranks";
  }
  const double joint = a.at("phase_space_reverse_kl").get<double>(), k64 = a.at("marginal_reverse_kl").get<double>(),
               k1 = one.at("marginal_reverse_kl").get<double>();
  EXPECT_LT(k64, joint) << "the marginal KL estimate (a lower bound) below the phase-space one (an upper bound)";
  EXPECT_GT(k64, k1) << "the estimate rises with K";
  EXPECT_LT(a.at("marginal_forward_kl").get<double>(), one.at("marginal_forward_kl").get<double>())
      << "the forward estimate falls with K";
}

TEST(Runner, McmcChainsDoNotDependOnTheRankCount) {
  const std::string d = test::temp_dir("mcmc");
  ASSERT_EQ(train(1, d + "/run", "--train.steps 10").code, 0);
  const std::string args = " sample --run " + d + "/run --mcmc 300 --chains 3 --burn-in 10 --out ";
  const auto one = run(boltzflow(1) + args + d + "/one.h5");
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_NE(one.output.find("acceptance"), std::string::npos) << one.output;
  EXPECT_NE(one.output.find("tau_int"), std::string::npos) << one.output;
  const auto two = run(boltzflow(2) + args + d + "/two.h5");
  ASSERT_EQ(two.code, 0) << two.output;
  h5::Handle a = h5::open_file(d + "/one.h5"), b = h5::open_file(d + "/two.h5");
  for (const char* name : {"log_w", "chain/state", "chain/accepted", "chain/observables", "chain/tau_int"})
    EXPECT_EQ(h5::read_array(a, name), h5::read_array(b, name)) << name;
  const auto state = h5::read_array(a, "chain/state"), acc = h5::read_array(a, "chain/accepted");
  ASSERT_EQ(state.size(), 900u);
  for (std::size_t i = 0; i < state.size(); ++i) {
    const std::size_t t = i % 300;
    if (t == 0) {
      EXPECT_EQ(state[i], 0.0);
    } else {
      EXPECT_EQ(state[i], acc[i] ? static_cast<double>(t) : state[i - 1]) << "step " << i;
    }
  }
  const double rate = h5::read_double(a, "chain/acceptance");
  EXPECT_GT(rate, 0.0);
  EXPECT_LE(rate, 1.0);
  for (const std::string bad : {" --mcmc 1", " --mcmc 10 --samples 10", " --samples 10 --chains 2", " --mcmc 10 --burn-in 9",
                                 " --mcmc 20 --chains 99999999999", " --mcmc 99999999999 --chains 99999999999"}) {
    const auto r = run(boltzflow(0) + " sample --run " + d + "/run --out " + d + "/bad.h5" + bad);
    EXPECT_EQ(r.code, 2) << bad << "\n" << r.output;
    EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
    EXPECT_FALSE(file_exists(d + "/bad.h5"));
  }
  // An --out that cannot be created is refused before any sampling, with the reason.
  const auto nodir = run(boltzflow(0) + " sample --run " + d + "/run --samples 10 --out " + d + "/no/such/dir/x.h5");
  EXPECT_EQ(nodir.code, 2) << nodir.output;
  EXPECT_NE(nodir.output.find("cannot create"), std::string::npos) << nodir.output;
}

// Every file a command writes must be a new file it can create: refused at the start with exit 2 and
// the reason — an empty name, a directory (or a name ending in '/'), an existing file (left as it was),
// an uncreatable path — where these had failed with exit 1 after the work (the 10^4-case fuzz).
// And a malformed --kokkos-* option is bad input, not an uncaught exception (it aborted).
TEST(Runner, OutputFilesMustBeNewAndCreatableAndKokkosOptionsAreChecked) {
  const std::string d = test::temp_dir("outputs");
  ASSERT_EQ(train(1, d + "/run", "--train.steps 5 --eval.samples 64").code, 0);
  {
    std::ofstream(d + "/keep.json") << "precious\n";
  }
  struct Case {
    std::string args, needle;
  };
  const std::string r = " --run " + d + "/run";
  const std::vector<Case> cases = {
      {" sample" + r + " --samples 8 --out ''", "--out needs a file name"},
      {" sample" + r + " --samples 8 --out " + d + "/", "names a directory"},
      {" sample" + r + " --samples 8 --out " + d + "/run", "exists (a directory)"},
      {" sample" + r + " --samples 8 --out " + d + "/keep.json", "exists; it is not overwritten"},
      {" evaluate" + r + " --eval.samples 64 --json " + d + "/keep.json", "--json '" + d + "/keep.json' exists"},
      {" evaluate" + r + " --eval.samples 64 --json " + d + "/no/such/x.json", "cannot create"},
      {" evaluate --runs '" + d + "/run' --table ''", "--table needs a file name"},
      {" evaluate --runs '" + d + "/run' --table " + d + "/run", "exists (a directory)"},
      {" check --samples 64 --json " + d + "/keep.json", "exists; it is not overwritten"},
      {" bench engine --widths 8 --tangents 0 --batch 8 --min-time 0.01 --json " + d + "/keep.json", "exists"},
      {" check --samples 64 --kokkos-threads=x", "in the Kokkos options (--kokkos-threads=x)"},
      {" check --samples 64 '--kokkos-threads<1'", "in the Kokkos options"},
      {" check --samples 64 --kokkos-num-threads=0", "--kokkos-num-threads=0: the value must be a whole number of at least 1"},
      {" check --samples 64 --kokkos-device-id=-1", "must be a whole number of at least 0"},
      {" check --samples 64 --kokkos-no-such-option=3", "not an option of Kokkos"},
  };
  for (const Case& c : cases) {
    const auto out = run(boltzflow(0) + c.args);
    EXPECT_EQ(out.code, 2) << c.args << "\n" << out.output;
    EXPECT_NE(out.output.find("error:"), std::string::npos) << c.args << "\n" << out.output;
    EXPECT_NE(out.output.find(c.needle), std::string::npos) << c.args << "\n" << out.output;
  }
  EXPECT_EQ(test::read_file(d + "/keep.json"), "precious\n");
  // check runs in chunks of 2^18 samples per rank (it had allocated them all: 32 GB for 2^31):
  // 300 000 samples in two chunks on one rank give the figures of one chunk each on two ranks.
  const auto one = run(boltzflow(1) + " check --samples 300000 --json " + d + "/c1.json");
  ASSERT_EQ(one.code, 0) << one.output;
  const auto two = run(boltzflow(2) + " check --samples 300000 --json " + d + "/c2.json");
  ASSERT_EQ(two.code, 0) << two.output;
  const Json a = Json::parse(test::read_file(d + "/c1.json")), b = Json::parse(test::read_file(d + "/c2.json"));
  for (const char* k : {"reverse_kl", "log_z", "forward_kl", "hausdorff"})
    EXPECT_NEAR(a.at(k).get<double>(), b.at(k).get<double>(), 1e-9 * (1 + std::fabs(a.at(k).get<double>()))) << k;
}

// A CSV file as rows of fields (quoted fields with "" escapes, as evaluate writes them).
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(test::read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') f.back() += '"', ++i;
      else if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) f.emplace_back();
      else f.back() += c;
    }
    rows.push_back(f);
  }
  return rows;
}

std::size_t column(const std::vector<std::string>& header, const std::string& name) {
  const auto it = std::find(header.begin(), header.end(), name);
  EXPECT_NE(it, header.end()) << "no column " << name;
  return static_cast<std::size_t>(it - header.begin());
}

// evaluate --group-by run.seed: runs that differ only in the seed form a group,
// whose metrics are the mean and sample standard deviation of its runs' rows
// (recomputed here from the per-run table); a run with another learning rate
// is a group of its own, a directory without a checkpoint is listed, not grouped.
TEST(Runner, EvaluateGroupsRunsOverSeeds) {
  const std::string d = test::temp_dir("groups");
  // One group whatever the white space in a value or how often the runs were evaluated.
  const char* same[] = {"", " --model.hidden '64, 64'", " --run.eval_every 5"};
  for (int seed : {1, 2, 3}) {
    auto r = train(1, d + "/r-a" + std::to_string(seed),
                   "--train.steps 10 --run.seed " + std::to_string(seed) + same[seed - 1]);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  auto r = train(1, d + "/r-b1", "--train.steps 10 --train.lr 0.01");
  ASSERT_EQ(r.code, 0) << r.output;
  make_dirs(d + "/r-c-empty");
  auto e = run(boltzflow(2) + " evaluate --runs '" + d + "/r-*' --table " + d + "/t.csv --group-by run.seed");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_NE(e.output.find("2 group(s) over run.seed"), std::string::npos) << e.output;
  EXPECT_NE(e.output.find("not grouped (did not load): " + d + "/r-c-empty"), std::string::npos) << e.output;
  const auto runs = read_csv(d + "/t.csv"), groups = read_csv(d + "/t.groups.csv");
  ASSERT_EQ(runs.size(), 6u);    // header + 5 directories
  ASSERT_EQ(groups.size(), 3u);  // header + 2 groups
  const auto &rh = runs[0], &gh = groups[0];
  const std::size_t run_c = column(rh, "run");
  for (const char* metric : {"reverse_kl", "reverse_ess", "hausdorff", "log_z"}) {
    const std::size_t mc = column(rh, metric);
    std::vector<double> a;
    for (std::size_t i = 1; i < runs.size(); ++i)
      if (runs[i][run_c].find("/r-a") != std::string::npos) a.push_back(std::stod(runs[i][mc]));
    ASSERT_EQ(a.size(), 3u);
    const double mean = (a[0] + a[1] + a[2]) / 3;
    double ss = 0;
    for (double v : a) ss += (v - mean) * (v - mean);
    const double sd = std::sqrt(ss / 2);
    const auto& g0 = groups[1];
    EXPECT_EQ(g0[column(gh, "runs")], "3");
    EXPECT_EQ(g0[column(gh, "run.seed")], "1;2;3");
    EXPECT_NEAR(std::stod(g0[column(gh, std::string(metric) + "_mean")]), mean, 1e-8 * (1 + std::fabs(mean))) << metric;
    EXPECT_NEAR(std::stod(g0[column(gh, std::string(metric) + "_sd")]), sd, 1e-8 * (1 + sd)) << metric;
    EXPECT_GT(sd, 0) << metric << ": different seeds, different results";
    const auto& g1 = groups[2];
    EXPECT_EQ(g1[column(gh, "runs")], "1");
    EXPECT_EQ(g1[column(gh, "train.lr")], "0.01");
    EXPECT_EQ(g1[column(gh, std::string(metric) + "_sd")], "nan") << "one run has no spread";
  }
  // Nothing is overwritten; a key that does not exist is named.
  const std::string before = test::read_file(d + "/t.groups.csv");
  auto again = run(boltzflow() + " evaluate --runs '" + d + "/r-*' --table " + d + "/t2.csv --group-by run.sed");
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.output.find("'run.sed' is not a configuration key"), std::string::npos) << again.output;
  {
    std::ofstream f(d + "/t3.groups.csv");
    f << "keep me\n";
  }
  auto clash = run(boltzflow() + " evaluate --runs '" + d + "/r-*' --table " + d + "/t3.csv --group-by run.seed");
  EXPECT_EQ(clash.code, 2);
  EXPECT_NE(clash.output.find("t3.groups.csv' exists"), std::string::npos) << clash.output;
  EXPECT_EQ(test::read_file(d + "/t3.groups.csv"), "keep me\n");
  EXPECT_FALSE(file_exists(d + "/t3.csv")) << "refused before anything was written";
  EXPECT_EQ(test::read_file(d + "/t.groups.csv"), before);
}

// The φ̄ histogram of a φ⁴ evaluation (Máté Fig. 10): the flow's fractions
// on either side of the barrier are its mode fractions (counted independently
// by mode assignment), 1 and 2 ranks give the same histogram, and the Eq. 21
// reference is the constant-field density integrated per bin (recomputed here
// by a midpoint rule on a fine grid).
TEST(Runner, Phi4MeanFieldHistogramMatchesModesRanksAndEq21) {
  const std::string d = test::temp_dir("histogram");
  auto t = run(boltzflow(2) + " train --out " + d + "/run" + kSmallPhi4 + " --target.m 1 --train.steps 30 --run.progress plain");
  ASSERT_EQ(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("histogram (" + d + "/run/mean_field.h5"), std::string::npos) << t.output;
  for (int ranks : {1, 2}) {
    const std::string h = d + "/h" + std::to_string(ranks) + ".h5", j = d + "/e" + std::to_string(ranks) + ".json";
    auto e = run(boltzflow(ranks) + " evaluate --run " + d + "/run --eval.samples 3001 --histogram " + h + " --json " + j);
    ASSERT_EQ(e.code, 0) << e.output;
  }
  h5::Handle f1 = h5::open_file(d + "/h1.h5"), f2 = h5::open_file(d + "/h2.h5");
  const auto flow = h5::read_array(f1, "flow"), edges = h5::read_array(f1, "edges"), ref = h5::read_array(f1, "reference");
  const auto below = h5::read_array(f1, "below"), above = h5::read_array(f1, "above");
  EXPECT_EQ(flow, h5::read_array(f2, "flow")) << "same samples on 1 and 2 ranks, same counts";
  const auto rw1 = h5::read_array(f1, "reweighted"), rw2 = h5::read_array(f2, "reweighted");
  for (std::size_t b = 0; b < rw1.size(); ++b) EXPECT_NEAR(rw1[b], rw2[b], 1e-12) << b;
  const std::size_t bins = flow.size();
  ASSERT_EQ(bins % 2, 0u);
  ASSERT_EQ(edges.size(), bins + 1);
  double left = below[0], total = below[0] + above[0], rsum = 0;
  for (std::size_t b = 0; b < bins; ++b) {
    if (b < bins / 2) left += flow[b];
    total += flow[b];
    rsum += ref[b];
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
  EXPECT_NEAR(rsum, 1.0, 1e-12);
  const Json m = Json::parse(test::read_file(d + "/e1.json"));
  EXPECT_NEAR(left, m.at("mode_fractions").at(0).get<double>(), 1e-12) << "mass below the barrier = mode 0's fraction";
  // Eq. 21 at this run's N = 16, m = 1 and the preset's λ = 1/16, α = 0.01:
  // density ∝ exp(−N u(φ̄)), u(x) = −m x² + λ (x − α)⁴, normalised over the histogram's range.
  const double N = 16, mm = 1.0, lam = 0.0625, al = 0.01;
  auto dens = [&](double x) { return std::exp(-N * (-mm * x * x + lam * std::pow(x - al, 4)) - 100.0); };
  std::vector<double> want(bins, 0.0);
  double z = 0;
  for (std::size_t b = 0; b < bins; ++b) {
    const int k = 4000;
    const double w = (edges[b + 1] - edges[b]) / k;
    for (int i = 0; i < k; ++i) want[b] += dens(edges[b] + (i + 0.5) * w) * w;
    z += want[b];
  }
  for (std::size_t b = 0; b < bins; ++b) EXPECT_NEAR(ref[b], want[b] / z, 1e-7) << "bin " << b;
  // The lattice figures with jackknife errors: the same on 1 and 2 ranks (blocks by global index),
  // χ₂ = V(⟨φ̄²⟩ − ⟨φ̄⟩²) ≥ 0, G(0) ≥ 0 and no error zero.
  const Json m2 = Json::parse(test::read_file(d + "/e2.json"));
  ASSERT_TRUE(m.contains("estimators")) << m.dump();
  EXPECT_EQ(m.at("estimator_blocks").get<int>(), 32);
  for (const char* fig : {"mean_field", "abs_mean_field", "chi2", "chi2_abs", "action_density", "G(0)", "G(8)"}) {
    ASSERT_TRUE(m.at("estimators").contains(fig)) << fig;
    const Json &e1 = m.at("estimators").at(fig), &e2 = m2.at("estimators").at(fig);
    for (const char* k : {"flow", "flow_error", "reweighted", "reweighted_error"})
      EXPECT_NEAR(e1.at(k).get<double>(), e2.at(k).get<double>(), 1e-9 * std::fmax(1.0, std::fabs(e1.at(k).get<double>())))
          << fig << " " << k;
    EXPECT_GT(e1.at("flow_error").get<double>(), 0.0) << fig;
  }
  EXPECT_GE(m.at("estimators").at("chi2").at("flow").get<double>(), 0.0);
  EXPECT_FALSE(m.at("estimators").contains("G(9)")) << "G(16 - t) = G(t) is not repeated";
  // The same figures from flow-based MCMC chains, binned, identical on 1 and 2 ranks.
  for (int ranks : {1, 2}) {
    auto c = run(boltzflow(ranks) + " sample --run " + d + "/run --mcmc 400 --chains 2 --out " + d + "/c" +
                 std::to_string(ranks) + ".h5");
    ASSERT_EQ(c.code, 0) << c.output;
    EXPECT_NE(c.output.find("figures with jackknife errors over 32 bins"), std::string::npos) << c.output;
  }
  {
    h5::Handle c1 = h5::open_file(d + "/c1.h5"), c2 = h5::open_file(d + "/c2.h5");
    EXPECT_EQ(h5::read_array(c1, "chain/figure_value"), h5::read_array(c2, "chain/figure_value"));
    EXPECT_EQ(h5::read_array(c1, "chain/figure_error"), h5::read_array(c2, "chain/figure_error"));
    EXPECT_EQ(h5::read_string(c1, "chain/figure_names").rfind("mean_field,abs_mean_field,chi2,", 0), 0u);
  }
  // Refused: an existing file, a target without a histogram.
  auto again = run(boltzflow() + " evaluate --run " + d + "/run --histogram " + d + "/h1.h5");
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.output.find("h1.h5' exists"), std::string::npos) << again.output;
  auto gmm = train(1, d + "/gmm", "--train.steps 5");
  ASSERT_EQ(gmm.code, 0) << gmm.output;
  auto none = run(boltzflow() + " evaluate --run " + d + "/gmm --histogram " + d + "/none.h5");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.output.find("defines no histogram"), std::string::npos) << none.output;
}

TEST(Runner, FilesAreReadableByStandardTools) {
  const std::string d = test::temp_dir("tools");
  auto r = train(2, d + "/run", "--train.steps 12");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(run("h5dump -H " + d + "/run/checkpoint.h5").code, 0);
  EXPECT_EQ(run("h5dump -d parameters " + d + "/run/checkpoint.h5").code, 0);
  // JSON lines with Python's json module, line by line; JSON documents whole.
  const std::string py = "python3 -c \"import json,sys; [json.loads(l) for f in sys.argv[1:] for l in open(f)]\" ";
  const std::string pydoc = "python3 -c \"import json,sys; [json.load(open(f)) for f in sys.argv[1:]]\" ";
  EXPECT_EQ(run(py + d + "/run/metrics.jsonl " + d + "/run/metrics-rank0.jsonl " + d + "/run/metrics-rank1.jsonl").code,
            0);
  auto e = run(boltzflow(2) + " evaluate --run " + d + "/run --eval.samples 1000 --json " + d + "/eval.json");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_EQ(run(pydoc + d + "/eval.json").code, 0);
  const Json j = Json::parse(test::read_file(d + "/eval.json"));
  for (const char* k : {"reverse_kl", "reverse_ess", "log_z", "log_z_stderr", "hausdorff", "mode_coverage_tv",
                        "forward_kl", "forward_ess", "samples", "ranks", "per_rank"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j.at("samples").get<long long>(), 1000);
  EXPECT_EQ(j.at("per_rank").size(), 2u);
  auto i = run(boltzflow() + " inspect " + d + "/run/checkpoint.h5");
  EXPECT_EQ(i.code, 0);
  EXPECT_NE(i.output.find("step            12"), std::string::npos) << i.output;
  EXPECT_NE(i.output.find("[configuration]"), std::string::npos);
}

// The potential map's extremum finder against a function whose extrema are known in closed form:
// V = cos(pi x) cos(pi y) on [-2, 2]^2 has interior minima (V = -1) where one coordinate is an even and
// the other an odd integer, (0, +-1) and (+-1, 0), and maxima (V = 1) at (0, 0) and (+-1, +-1); the
// saddles at half-integers are neither, and a plateau has no strict extremum.
TEST(PotentialMap, GridExtremaOfAKnownFunction) {
  const int n = 81;
  std::vector<double> xs(n), v(n * n);
  for (int i = 0; i < n; ++i) xs[i] = -2 + 0.05 * i;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) v[i * n + j] = std::cos(M_PI * xs[i]) * std::cos(M_PI * xs[j]);
  auto sorted_points = [](const std::vector<double>& at) {
    std::vector<std::pair<long, long>> p;
    for (std::size_t k = 0; k < at.size(); k += 2) p.emplace_back(std::lround(at[k]), std::lround(at[k + 1]));
    std::sort(p.begin(), p.end());
    return p;
  };
  const std::vector<std::pair<long, long>> minima = {{-1, 0}, {0, -1}, {0, 1}, {1, 0}};
  const std::vector<std::pair<long, long>> maxima = {{-1, -1}, {-1, 1}, {0, 0}, {1, -1}, {1, 1}};
  const auto mins = bf::grid_extrema(v, xs, xs, +1), maxs = bf::grid_extrema(v, xs, xs, -1);
  EXPECT_EQ(sorted_points(mins), minima);
  EXPECT_EQ(sorted_points(maxs), maxima);
  for (std::size_t k = 0; k < mins.size(); ++k) EXPECT_NEAR(mins[k], std::round(mins[k]), 1e-12);
  std::fill(v.begin(), v.end(), 1.0);
  EXPECT_TRUE(bf::grid_extrema(v, xs, xs, +1).empty());
  EXPECT_TRUE(bf::grid_extrema(v, xs, xs, -1).empty());
  EXPECT_THROW(bf::grid_extrema(std::vector<double>(5), xs, xs, +1), std::invalid_argument);
}
