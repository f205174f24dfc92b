// Thin RAII and reading helpers over the HDF5 C library. Only src/h5ad includes
// <hdf5.h>. Callers hold Hdf5Lock for every call into this file.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::h5ad {

// One process-wide lock serialises cellcube's HDF5 calls. (Debian builds libhdf5 with
// its own global lock, but portable HDF5 builds are not thread-safe, and the reader's
// multi-call sequences must not interleave.) It is held across fork (hdf5_util.cc).
std::recursive_mutex& Hdf5Mutex();

// Holds Hdf5Mutex for a scope. On a thread's first lock it also silences HDF5's own
// printing of errors to stderr, which thread-safe builds keep per thread: cellcube
// reports HDF5's errors in its own words, in one line.
class Hdf5Lock {
 public:
  explicit Hdf5Lock(std::recursive_mutex& mutex);
  Hdf5Lock(const Hdf5Lock&) = delete;
  Hdf5Lock& operator=(const Hdf5Lock&) = delete;

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

// Opens the library and registers the lzf filter, once per process.
void InitHdf5();

// Why the last HDF5 call failed, from its error stack: the operating system's message
// when a low-level file call failed (disk full, permission denied), else the message
// of the innermost call (where the error was detected); "" when the stack is empty.
// The one walker of HDF5's error stack.
std::string Hdf5ErrorDetail();

// Owns one hid_t and closes it with the function its type needs.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { Reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void Reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

enum class NodeKind { kMissing, kGroup, kDataset, kOther };

// Kind of the object at `path` below `loc`, following each link component safely.
NodeKind GetNodeKind(hid_t loc, const std::string& path);
Result<Handle> OpenGroup(hid_t loc, const std::string& path);
Result<Handle> OpenDataset(hid_t loc, const std::string& path);
// Names of the links in a group, in name order.
std::vector<std::string> ListGroup(hid_t group);

// Attributes. Missing attributes give nullopt / empty; wrong types give nullopt.
bool HasAttr(hid_t obj, const char* name);
std::optional<std::string> ReadStringAttr(hid_t obj, const char* name);
std::vector<std::string> ReadStringListAttr(hid_t obj, const char* name);
std::optional<std::vector<int64_t>> ReadIntListAttr(hid_t obj, const char* name);
std::optional<bool> ReadBoolAttr(hid_t obj, const char* name);

// Element types as cellcube names them.
enum class TypeClass { kInteger, kUnsigned, kFloat, kBool, kString, kReference, kCompound, kOther };
TypeClass ClassifyType(hid_t type);
// "int32", "uint8", "float32", "bool", "string", ...
std::string TypeName(hid_t type);

std::vector<int64_t> DatasetShape(hid_t dataset);
// Element count of a dataset, 0 for a null dataspace.
int64_t DatasetSize(hid_t dataset);

// Reads `count` elements starting at `begin` of a 1-D dataset (or the flattened
// row-major elements of an N-D one when `begin` == 0 and count == size), converting
// to `mem_type`.
Status ReadRange(hid_t dataset, hid_t mem_type, int64_t begin, int64_t count, void* out);
// Reads rows [row_begin, row_begin + n_rows) of a 2-D dataset, converted to `mem_type`.
Status ReadRows(hid_t dataset, hid_t mem_type, int64_t row_begin, int64_t n_rows, void* out);

// A whole 1-D dataset of strings (fixed or variable length), numbers or booleans.
Result<std::vector<std::string>> ReadStringDataset(hid_t dataset);
Result<std::vector<double>> ReadDoubleDataset(hid_t dataset);
Result<std::vector<int64_t>> ReadInt64Dataset(hid_t dataset);

// One field of a compound dataset (anndata 0.6 obs/var).
Result<std::vector<std::string>> ReadCompoundStrings(hid_t dataset, const std::string& field);
Result<std::vector<double>> ReadCompoundDoubles(hid_t dataset, const std::string& field);
Result<std::vector<int64_t>> ReadCompoundInt64(hid_t dataset, const std::string& field);

// Filters of a dataset ("none", "gzip(4)", "lzf", "shuffle+gzip(4)"); an error when a
// filter is not available to decode, naming it.
Result<std::string> DescribeFilters(hid_t dataset);
// Chunk shape, empty when the dataset is not chunked.
std::vector<int64_t> ChunkShape(hid_t dataset);

}  // namespace cellcube::h5ad
