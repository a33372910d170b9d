// Running the real boltzflow program from tests (never a mock).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

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

/// A fresh temporary directory.
inline std::string temp_dir(const std::string& tag) {
  std::string tmpl = "/tmp/boltzflow-test-" + tag + "-XXXXXX";
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

}  // namespace bf::test
