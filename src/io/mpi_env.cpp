#include "src/io/mpi_env.hpp"

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <vector>

#include <cstdlib>
#include <iostream>

#include "flows/nn/gemm.hpp"
#include "src/errors.hpp"

namespace bf {

namespace {

/// Whether s is a whole number of at least `least`.
bool whole_number_at_least(const std::string& s, long long least) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  return std::stoll(s) >= least;
}

/// A malformed count or device among the --kokkos-* options, checked before Kokkos sees
/// them (Kokkos 4 aborts on --kokkos-num-threads=0; 3.4 throws): the reason, or "".
std::string kokkos_option_problem(const std::vector<std::string>& kokkos_args) {
  struct Rule {
    const char* name;
    long long least;
  };
  static const Rule rules[] = {
      {"--kokkos-num-threads", 1}, {"--kokkos-threads", 1}, {"--kokkos-device-id", 0}, {"--kokkos-numa", 1}};
  for (const std::string& a : kokkos_args)
    for (const Rule& r : rules) {
      const std::string prefix = std::string(r.name) + "=";
      if (a.rfind(prefix, 0) == 0 && !whole_number_at_least(a.substr(prefix.size()), r.least))
        return a + ": the value must be a whole number of at least " + std::to_string(r.least);
    }
  return "";
}

[[noreturn]] void kokkos_option_error(int rank, const std::vector<std::string>& kokkos_args, const std::string& why) {
  if (rank == 0) {
    std::cerr << "boltzflow: error: in the Kokkos options (";
    for (std::size_t i = 0; i < kokkos_args.size(); ++i) std::cerr << (i ? " " : "") << kokkos_args[i];
    std::cerr << "): " << why << "\n";
  }
  if (Kokkos::is_initialized()) Kokkos::finalize();
  MPI_Finalize();
  std::exit(kExitBadInput);
}

}  // namespace

Environment::Environment(int& argc, char**& argv, const std::vector<std::string>& kokkos_args) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  const std::string problem = kokkos_option_problem(kokkos_args);
  if (!problem.empty()) kokkos_option_error(rank_, kokkos_args, problem);
  std::vector<std::string> args{argc > 0 ? argv[0] : "boltzflow"};
  args.insert(args.end(), kokkos_args.begin(), kokkos_args.end());
  std::vector<char*> ptrs;
  for (auto& a : args) ptrs.push_back(a.data());
  int kargc = static_cast<int>(ptrs.size());
  ptrs.push_back(nullptr);
  try {
    Kokkos::initialize(kargc, ptrs.data());
  } catch (const std::exception& e) {
    // A malformed --kokkos-* option (Kokkos 3.4 throws while parsing them): bad input, not a crash.
    kokkos_option_error(rank_, kokkos_args, e.what());
  }
  // Kokkos removes the options it takes from the list; one left is one this Kokkos does not
  // know (Kokkos 4 only warns, and runs as if it had not been given): bad input too.
  if (kargc > 1) {
    std::string left;
    for (int i = 1; i < kargc; ++i) left += std::string(i > 1 ? " " : "") + ptrs[i];
    kokkos_option_error(rank_, kokkos_args,
                        "not an option of Kokkos " + std::to_string(KOKKOS_VERSION / 10000) + "." +
                            std::to_string(KOKKOS_VERSION / 100 % 100) + ": " + left +
                            " (Kokkos 4 names the thread count --kokkos-num-threads, Kokkos 3 --kokkos-threads)");
  }
  // A multithreaded BLAS under several ranks per node, or beside Kokkos'
  // OpenMP threads, oversubscribes the cores (flows/nn/gemm.hpp).
  configure_gemm_threads();
}

Environment::~Environment() {
  Kokkos::finalize();
  MPI_Finalize();
}

std::string kokkos_backend() { return Kokkos::DefaultExecutionSpace::name(); }

Slice split_range(long long total, int rank, int size) {
  Slice s;
  s.begin = total / size * rank + std::min<long long>(rank, total % size);
  s.end = s.begin + total / size + (rank < total % size ? 1 : 0);
  return s;
}

void root_agreed(const Environment& env, const std::function<void()>& f) {
  int code = 0;
  std::string msg;
  if (env.root()) {
    try {
      f();
    } catch (const InputError& e) {
      code = 2;
      msg = e.what();
    } catch (const std::exception& e) {
      code = 1;
      msg = e.what();
    }
  }
  int len = static_cast<int>(msg.size());
  int hdr[2] = {code, len};
  MPI_Bcast(hdr, 2, MPI_INT, 0, env.comm());
  msg.resize(static_cast<std::size_t>(hdr[1]));
  if (hdr[1] > 0) MPI_Bcast(msg.data(), hdr[1], MPI_CHAR, 0, env.comm());
  if (hdr[0] == 2) throw InputError(msg);
  if (hdr[0] == 1) throw RunError(msg);
}

namespace {
template <class V>
void broadcast_sized(const Environment& env, V& v, MPI_Datatype type) {
  long long n = static_cast<long long>(v.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, env.comm());
  v.resize(static_cast<std::size_t>(n));
  if (n > 0) MPI_Bcast(v.data(), static_cast<int>(n), type, 0, env.comm());
}
}  // namespace

void broadcast(const Environment& env, std::string& s) { broadcast_sized(env, s, MPI_CHAR); }
void broadcast(const Environment& env, std::vector<double>& v) { broadcast_sized(env, v, MPI_DOUBLE); }

std::vector<double> gather_rows(const Environment& env, const double* rows, long long count, int width) {
  const int mine = static_cast<int>(count * width);
  std::vector<int> counts(env.root() ? env.size() : 0), displs(env.root() ? env.size() : 0);
  MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, env.comm());
  long long total = 0;
  for (int r = 0; r < static_cast<int>(counts.size()); ++r) {
    displs[r] = static_cast<int>(total);
    total += counts[r];
  }
  if (total > std::numeric_limits<int>::max())
    throw std::runtime_error("gather_rows: more than 2^31 numbers to gather on one rank");
  std::vector<double> all(static_cast<std::size_t>(total));
  MPI_Gatherv(rows, mine, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0, env.comm());
  return all;
}

}  // namespace bf
