#include "src/run/run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "src/errors.hpp"
#include "src/io/json.hpp"

namespace bf {

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void check_new_output_file(const std::string& path, const std::string& flag) {
  if (path.empty()) throw InputError(flag + " needs a file name");
  if (path.back() == '/') throw InputError(flag + " '" + path + "' names a directory, not a file");
  struct stat st;
  if (stat(path.c_str(), &st) == 0)
    throw InputError(flag + " '" + path + "' exists" + (S_ISDIR(st.st_mode) ? " (a directory)" : "") +
                     "; it is not overwritten");
  const std::string tmp = path + ".tmp";
  errno = 0;
  if (!std::ofstream(tmp)) throw InputError(flag + " '" + path + "': cannot create '" + tmp + "' (" + std::strerror(errno) + ")");
  std::remove(tmp.c_str());
}

bool dir_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path) {
  if (path.empty() || dir_exists(path)) return;
  const auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_dirs(path.substr(0, slash));
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    throw InputError("cannot create directory '" + path + "': " + std::strerror(errno));
  if (!dir_exists(path)) throw InputError("'" + path + "' exists and is not a directory");
}

namespace {
bool locking_disabled() {
  const char* v = std::getenv("BOLTZFLOW_LOCKING");
  if (!v) return false;
  const std::string s = v;
  return s == "FALSE" || s == "false" || s == "0" || s == "no" || s == "NO";
}
}  // namespace

RunLock::RunLock(const std::string& dir) {
  if (locking_disabled()) return;
  const std::string path = RunPaths{dir}.lock();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError("cannot open the run lock '" + path + "': " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[256];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) holder.assign(buf, static_cast<std::size_t>(n));
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw InputError("'" + dir + "' is in use by another boltzflow process" +
                       (holder.empty() ? std::string() : " (host and pid: " + holder + ")") +
                       "; one run per directory. Wait for it to end, or choose another --out. Nothing was changed.");
    throw InputError("cannot lock '" + path + "': " + std::strerror(err) +
                     " (on a file system without flock, set BOLTZFLOW_LOCKING=FALSE)");
  }
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown-host");
  const std::string me = std::string(host) + " " + std::to_string(static_cast<long>(getpid())) + "\n";
  // Best effort: the record is for the message only, the flock is the lock.
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const ssize_t w = ::pwrite(fd, me.data(), me.size(), 0);
  }
  fd_ = fd;
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

RunLock::RunLock(RunLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
    out << text;
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename '" + tmp + "'");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string rows_up_to(const std::string& jsonl, std::int64_t max_step) {
  std::istringstream in(jsonl);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const Json j = Json::parse(line);
      if (j.contains("step") && j.at("step").get<long long>() > max_step) continue;
    } catch (const std::exception&) {
      continue;  // a torn last line from a killed job
    }
    out += line + "\n";
  }
  return out;
}

bool has_step_row(const std::string& jsonl, std::int64_t step) {
  std::istringstream in(jsonl);
  std::string line;
  while (std::getline(in, line)) {
    try {
      const Json j = Json::parse(line);
      if (j.contains("step") && j.at("step").get<long long>() == step) return true;
    } catch (const std::exception&) {
    }
  }
  return false;
}

void JsonlWriter::open(const std::string& path, const std::string& initial) {
  if (out_.is_open()) out_.close();
  out_.clear();
  path_ = path;
  write_text_atomic(path, initial);
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error("cannot append to '" + path + "'");
}

void JsonlWriter::write(const std::string& line) { out_ << line << '\n'; }
void JsonlWriter::flush() { out_.flush(); }

}  // namespace bf
