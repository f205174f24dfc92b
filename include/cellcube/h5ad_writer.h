// Writing AnnData (.h5ad) files in anndata's >= 0.8 layout, for the store and for
// `cellcube synth`. Low-level (groups, arrays, attributes, hard links, appendable
// chunked datasets) plus anndata-level helpers (categorical columns, dataframes).
//
// The writer creates or truncates `path` and writes nothing atomically by itself:
// callers that need atomic replacement write to a temporary path and rename.
// Thread safety: calls serialise on the process-wide HDF5 lock; use one Writer from
// one thread at a time. Errors: Status with one clear line (path and reason).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::h5ad {

enum class ElemType {
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kFloat32,
  kFloat64
};
size_t ElemSize(ElemType t);

// A dataframe column to write.
struct ColumnData {
  enum class Type { kCategorical, kStrings, kInt64, kFloat64, kBool };
  std::string name;
  Type type = Type::kStrings;
  std::vector<std::string> labels;  // categories (kCategorical) or values (kStrings)
  std::vector<int32_t> codes;       // kCategorical: per row, -1 = missing
  bool ordered = false;             // kCategorical
  std::vector<int64_t> ints;        // kInt64, kBool (0/1)
  std::vector<double> floats;       // kFloat64

  // A column of plain values of one type.
  static ColumnData Strings(std::string name, std::vector<std::string> values) {
    ColumnData c;
    c.name = std::move(name);
    c.type = Type::kStrings;
    c.labels = std::move(values);
    return c;
  }
  static ColumnData Int64(std::string name, std::vector<int64_t> values) {
    ColumnData c;
    c.name = std::move(name);
    c.type = Type::kInt64;
    c.ints = std::move(values);
    return c;
  }
  static ColumnData Float64(std::string name, std::vector<double> values) {
    ColumnData c;
    c.name = std::move(name);
    c.type = Type::kFloat64;
    c.floats = std::move(values);
    return c;
  }
};

struct Compression {
  int gzip_level = 0;          // 0 = none
  int64_t chunk_elements = 0;  // required (> 0) when compressing or appending
};

class Writer {
 public:
  // `align`: when > 0, every object of at least `align` bytes starts at a multiple of
  // `align` in the file (H5Pset_alignment), so arrays read in place through a mapping are
  // aligned to their element size and to pages.
  static Result<std::unique_ptr<Writer>> Create(const std::string& path, uint64_t align = 0);
  ~Writer();  // closes without reporting errors; call Close() to see them
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Root attributes encoding-type=anndata, encoding-version=0.1.0 are written by Create.

  // Creates a group (parents must exist); sets encoding-type/-version when given.
  Status CreateGroup(const std::string& path, const std::string& encoding_type = "",
                     const std::string& encoding_version = "");

  // Attributes on the object at `path` ("/" for the root).
  Status SetStringAttr(const std::string& path, const std::string& name, const std::string& value);
  Status SetStringListAttr(const std::string& path, const std::string& name,
                           const std::vector<std::string>& values);
  Status SetIntListAttr(const std::string& path, const std::string& name,
                        const std::vector<int64_t>& values);
  Status SetBoolAttr(const std::string& path, const std::string& name, bool value);

  // A numeric dataset of `shape` (row-major) from `data`; contiguous and uncompressed
  // unless `compression` says otherwise. Little-endian on disk. An empty shape writes a
  // scalar (anndata's numeric-scalar encoding).
  Status WriteArray(const std::string& path, ElemType type, const void* data,
                    const std::vector<int64_t>& shape, const Compression& compression = {});
  // A 1-D contiguous, uncompressed dataset of `count` elements whose file space is
  // reserved now (no fill values written) and filled by WriteSlice, in any order and in
  // pieces, so an array larger than memory streams to the file. Every element must be
  // written before Close; unwritten ones hold whatever the disk held.
  Status CreateFixedArray(const std::string& path, ElemType type, int64_t count);
  // The same with a shape of one or two dimensions (row-major); a 2-D array is written
  // in slices of whole rows.
  Status CreateFixedArray(const std::string& path, ElemType type,
                          const std::vector<int64_t>& shape);
  // Writes elements [offset, offset + count) of a CreateFixedArray dataset from `data`
  // (of the dataset's element type), counted row-major (whole rows for a 2-D array).
  Status WriteSlice(const std::string& path, int64_t offset, const void* data, int64_t count);
  // A 1-D dataset of UTF-8 strings, with encoding-type=string-array: variable-length
  // strings (as h5py writes Python str), or, after PreferFixedWidthStrings(true),
  // null-padded fixed-width strings wherever those take no more room than
  // variable-length ones would. Both read back the same in anndata and h5py; fixed-width
  // ones read in one piece instead of one heap lookup per string (a store's 60,000 gene
  // ids in about a millisecond instead of a hundred).
  Status WriteStrings(const std::string& path, const std::vector<std::string>& values);
  void PreferFixedWidthStrings(bool prefer) { fixed_width_strings_ = prefer; }
  // A scalar UTF-8 string dataset (anndata's "string" encoding, used in uns).
  Status WriteScalarString(const std::string& path, const std::string& value);

  // A second name for an existing object (HDF5 hard link): both names are one object.
  Status HardLink(const std::string& existing, const std::string& new_path);

  // A 1-D chunked dataset that grows with each Append (for streaming big matrices).
  Status CreateAppendable(const std::string& path, ElemType type, const Compression& compression);
  Status Append(const std::string& path, const void* data, int64_t count);
  // Appended data goes to the file in whole chunks (the last, partial chunk at Close),
  // compressed outside the HDF5 lock on up to `n` threads (default: the hardware
  // threads, at most 8) and stored with H5Dwrite_chunk.
  void SetCompressionThreads(int n);

  // anndata helpers.
  Status WriteColumn(const std::string& group, const ColumnData& column);
  // A dataframe group: index (written as `_index`), columns in order, column-order attr.
  Status WriteDataFrame(const std::string& path, const std::vector<std::string>& index,
                        const std::vector<ColumnData>& columns);
  // Marks `path` (a group holding data/indices/indptr) as a csr_matrix or csc_matrix.
  Status MarkSparse(const std::string& path, bool csr, int64_t n_rows, int64_t n_cols);

  // Flushes HDF5's buffers to the file and closes it.
  Status Close();

  struct Impl;

 private:
  explicit Writer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  bool fixed_width_strings_ = false;
};

}  // namespace cellcube::h5ad
