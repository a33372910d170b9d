// Running the real boltzflow program from tests (never a mock).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace bf::test {

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs a shell command, returns its exit code and output.
inline Result run(const std::string& cmd) {
  Result r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// "mpiexec -n N boltzflow" (no mpiexec for N = 0).
inline std::string boltzflow(int ranks = 0) {
  if (ranks == 0) return BOLTZFLOW_BINARY;
  return std::string(BOLTZFLOW_MPIEXEC) + " " + BOLTZFLOW_MPIEXEC_NP + " " + std::to_string(ranks) + " " +
         BOLTZFLOW_BINARY;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The temporary directories of this test program: removed at exit when every
/// test passed (kept for a look when one failed, or with BOLTZFLOW_KEEP_TEST_DIRS set).
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    const ::testing::UnitTest* u = ::testing::UnitTest::GetInstance();
    if (!u || !u->Passed() || std::getenv("BOLTZFLOW_KEEP_TEST_DIRS")) return;
    for (const auto& d : dirs) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};
inline TempDirs& temp_dirs() {
  static TempDirs t;
  return t;
}

/// A fresh temporary directory (see TempDirs).
inline std::string temp_dir(const std::string& tag) {
  std::string tmpl = "/tmp/boltzflow-test-" + tag + "-XXXXXX";
  char* d = mkdtemp(tmpl.data());
  if (!d) return std::string();
  temp_dirs().dirs.push_back(d);
  return d;
}

}  // namespace bf::test
