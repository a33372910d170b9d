// Thin RAII helpers over the HDF5 C API, shared by checkpoints, sample files
// and evaluation tables. Errors become std::runtime_error with the object's
// name; HDF5's own error stack printing is switched off.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

namespace bf::h5 {

/// Silences HDF5's automatic error printing (once per process).
void quiet();

class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void close();

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

Handle create_file(const std::string& path);
Handle open_file(const std::string& path);  // read-only
Handle create_group(hid_t loc, const std::string& name);

void write_string(hid_t loc, const std::string& name, const std::string& value);
void write_int(hid_t loc, const std::string& name, long long value);
void write_double(hid_t loc, const std::string& name, double value);
/// 1-D array stored as float or double (values converted by HDF5).
void write_array(hid_t loc, const std::string& name, const std::vector<double>& v, bool as_float);
/// 2-D array [rows x cols], row-major.
void write_matrix(hid_t loc, const std::string& name, const std::vector<double>& v, std::size_t rows,
                  std::size_t cols);
void write_string_attribute(hid_t obj, const std::string& name, const std::string& value);

bool exists(hid_t loc, const std::string& path);
std::string read_string(hid_t loc, const std::string& name);
long long read_int(hid_t loc, const std::string& name);
double read_double(hid_t loc, const std::string& name);
std::vector<double> read_array(hid_t loc, const std::string& name);
std::string read_string_attribute(hid_t obj, const std::string& name);

}  // namespace bf::h5
