#include "src/io/hdf5_util.hpp"

#include <stdexcept>

namespace bf::h5 {

void quiet() {
  static bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    close();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

Handle::~Handle() { close(); }

void Handle::close() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

namespace {
void check(herr_t s, const std::string& what) {
  if (s < 0) throw std::runtime_error("HDF5: " + what + " failed");
}
Handle check(hid_t id, herr_t (*close)(hid_t), const std::string& what) {
  if (id < 0) throw std::runtime_error("HDF5: " + what + " failed");
  return Handle(id, close);
}
}  // namespace

Handle create_file(const std::string& path) {
  quiet();
  return check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "creating " + path);
}

Handle open_file(const std::string& path) {
  quiet();
  return check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "opening " + path);
}

Handle create_group(hid_t loc, const std::string& name) {
  return check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
               "creating group " + name);
}

namespace {
Handle string_type(std::size_t len) {
  Handle t = check(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  check(H5Tset_size(t, len == 0 ? 1 : len), "string size");
  check(H5Tset_cset(t, H5T_CSET_UTF8), "string charset");
  return t;
}
}  // namespace

void write_string(hid_t loc, const std::string& name, const std::string& value) {
  Handle t = string_type(value.size());
  Handle s = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle d = check(H5Dcreate2(loc, name.c_str(), t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                   "creating " + name);
  const std::string v = value.empty() ? std::string(1, '\0') : value;
  check(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "writing " + name);
}

void write_int(hid_t loc, const std::string& name, long long value) {
  Handle s = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle d = check(H5Dcreate2(loc, name.c_str(), H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                   "creating " + name);
  check(H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value), "writing " + name);
}

void write_double(hid_t loc, const std::string& name, double value) {
  Handle s = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle d = check(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                   "creating " + name);
  check(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value), "writing " + name);
}

void write_array(hid_t loc, const std::string& name, const std::vector<double>& v, bool as_float) {
  const hsize_t n = v.size();
  Handle s = check(H5Screate_simple(1, &n, nullptr), H5Sclose, "array space");
  Handle d = check(H5Dcreate2(loc, name.c_str(), as_float ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, s, H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose, "creating " + name);
  if (n) check(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "writing " + name);
}

void write_matrix(hid_t loc, const std::string& name, const std::vector<double>& v, std::size_t rows,
                  std::size_t cols) {
  const hsize_t dims[2] = {rows, cols};
  Handle s = check(H5Screate_simple(2, dims, nullptr), H5Sclose, "matrix space");
  Handle d = check(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose, "creating " + name);
  if (rows > 0 && cols > 0) check(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "writing " + name);
}

void write_string_attribute(hid_t obj, const std::string& name, const std::string& value) {
  Handle t = string_type(value.size());
  Handle s = check(H5Screate(H5S_SCALAR), H5Sclose, "scalar space");
  Handle a = check(H5Acreate2(obj, name.c_str(), t, s, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, "attribute " + name);
  check(H5Awrite(a, t, value.data()), "writing attribute " + name);
}

bool exists(hid_t loc, const std::string& path) {
  // Check each component so a missing group is not an error.
  std::string part;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    part = path.substr(0, pos);
    if (part.empty()) continue;
    if (H5Lexists(loc, part.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

namespace {
Handle open_dataset(hid_t loc, const std::string& name) {
  if (!exists(loc, name)) throw std::runtime_error("missing dataset '" + name + "'");
  return check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, "opening " + name);
}
}  // namespace

std::string read_string(hid_t loc, const std::string& name) {
  Handle d = open_dataset(loc, name);
  Handle ft = check(H5Dget_type(d), H5Tclose, "type of " + name);
  if (H5Tget_class(ft) != H5T_STRING) throw std::runtime_error("dataset '" + name + "' is not a string");
  const std::size_t len = H5Tget_size(ft);
  Handle mt = string_type(len);
  std::string out(len, '\0');
  check(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "reading " + name);
  const auto z = out.find('\0');
  if (z != std::string::npos) out.resize(z);
  return out;
}

long long read_int(hid_t loc, const std::string& name) {
  Handle d = open_dataset(loc, name);
  long long v = 0;
  check(H5Dread(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "reading " + name);
  return v;
}

double read_double(hid_t loc, const std::string& name) {
  Handle d = open_dataset(loc, name);
  double v = 0;
  check(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "reading " + name);
  return v;
}

std::vector<double> read_array(hid_t loc, const std::string& name) {
  Handle d = open_dataset(loc, name);
  Handle s = check(H5Dget_space(d), H5Sclose, "space of " + name);
  const int rank = H5Sget_simple_extent_ndims(s);
  if (rank < 1 || rank > 2) throw std::runtime_error("dataset '" + name + "' has rank " + std::to_string(rank));
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(s, dims, nullptr);
  std::vector<double> v(static_cast<std::size_t>(dims[0] * (rank == 2 ? dims[1] : 1)));
  if (!v.empty()) check(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "reading " + name);
  return v;
}

std::string read_string_attribute(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw std::runtime_error("missing attribute '" + name + "'");
  Handle a = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "attribute " + name);
  Handle ft = check(H5Aget_type(a), H5Tclose, "attribute type");
  const std::size_t len = H5Tget_size(ft);
  Handle mt = string_type(len);
  std::string out(len, '\0');
  check(H5Aread(a, mt, out.data()), "reading attribute " + name);
  const auto z = out.find('\0');
  if (z != std::string::npos) out.resize(z);
  return out;
}

}  // namespace bf::h5
