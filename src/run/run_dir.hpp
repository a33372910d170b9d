// The run directory: what a training run owns on disk.
//   checkpoint.h5          latest complete checkpoint
//   config.ini             the fully resolved configuration
//   metrics.jsonl          rank 0: one global row per step (step, time, loss, lr, ...)
//                          and every metric at evaluation steps
//   metrics-rank<r>.jsonl  rank r: its local loss and local evaluation figures
//   .lock                  held (flock) by the training that owns the directory;
//                          holds "host pid" of the last holder
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace bf {

struct RunPaths {
  std::string dir;
  std::string checkpoint() const { return dir + "/checkpoint.h5"; }
  std::string config() const { return dir + "/config.ini"; }
  std::string metrics() const { return dir + "/metrics.jsonl"; }
  std::string rank_metrics(int r) const { return dir + "/metrics-rank" + std::to_string(r) + ".jsonl"; }
  std::string lock() const { return dir + "/.lock"; }
};

/// One run per directory: an exclusive flock(2) on DIR/.lock, taken before
/// anything else in the directory is read or written and held for the life of
/// the object. The OS releases it when the process dies, however it dies, so a
/// killed job never leaves a stale lock. The file records "host pid" of the
/// holder for the message a second process gets. BOLTZFLOW_LOCKING=FALSE (as
/// HDF5_USE_FILE_LOCKING=FALSE) skips it, for file systems without flock.
class RunLock {
 public:
  RunLock() = default;
  /// Takes the lock; InputError naming the holder when another process has it.
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

bool file_exists(const std::string& path);
/// Refuses (InputError naming `flag`) a file the command is about to write that cannot be a new
/// file: an empty name, one ending in '/', an existing path of any kind (nothing is overwritten),
/// or one whose temporary `path.tmp` cannot be created (no such directory, name too long, no
/// permission). Called before the work, so a bad name costs nothing.
void check_new_output_file(const std::string& path, const std::string& flag);
bool dir_exists(const std::string& path);
/// mkdir -p; throws InputError when it cannot.
void make_dirs(const std::string& path);
/// Writes via a temporary file and rename.
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

/// The JSON-lines rows of a file whose "step" is at most `max_step`
/// (rows without a step, like events, are kept in place).
std::string rows_up_to(const std::string& jsonl, std::int64_t max_step);

/// Whether a JSON-lines text has a row with this "step".
bool has_step_row(const std::string& jsonl, std::int64_t step);

/// Appends JSON lines to a file; buffered, flushed on demand.
class JsonlWriter {
 public:
  JsonlWriter() = default;
  /// Opens for appending after replacing the file's content with `initial`.
  void open(const std::string& path, const std::string& initial);
  void write(const std::string& line);
  void flush();
  bool is_open() const { return out_.is_open(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace bf
