// Reading AnnData (.h5ad) files: the matrices (X, raw/X, layers/NAME) streamed in
// blocks, and the obs/var dataframes, in every layout anndata 0.6 through 0.11 and
// other writers produce. See docs/READER.md for the layouts and decisions.
//
// Thread safety: HDF5 is not thread-safe, so every function here serialises on one
// process-wide lock. Objects may be used from any thread, one thread at a time.
// Errors: every fallible call returns Status / Result with one clear line.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cellcube/sparse_block.h"
#include "cellcube/status.h"

namespace cellcube::h5ad {

// What to tell a user whose file crashed libhdf5 (a child process reading it died of a
// signal): its structure is damaged beyond what libhdf5 survives, and how to check it.
extern const char* const kCrashedReaderAdvice;

enum class Encoding { kDense, kCsr, kCsc };
const char* EncodingName(Encoding e);

// A matrix found in the file, described from its metadata only.
struct MatrixInfo {
  std::string path;  // HDF5 path: "X", "raw/X", "raw.X" (anndata 0.6), "layers/NAME"
  Encoding encoding = Encoding::kDense;
  std::string dtype;        // of the values: "float32", "int64", "uint16", ...
  std::string index_dtype;  // of indices/indptr for sparse matrices, else empty
  int64_t n_rows = 0;
  int64_t n_cols = 0;
  int64_t stored = 0;           // stored values: nnz for sparse, n_rows * n_cols for dense
  std::vector<int64_t> chunks;  // chunk shape of the values dataset; empty when contiguous
  std::string filter;           // "none", "gzip(4)", "lzf", "shuffle+gzip(4)", ...
};

enum class ColumnKind {
  kCategorical,
  kString,
  kInteger,
  kFloat,
  kBoolean,
  kNullableInteger,
  kNullableBoolean,
};
const char* ColumnKindName(ColumnKind k);

// A dataframe column reduced to labels: each row holds a code into `labels`, or
// kMissing. Numbers are labelled as Python prints them ("3", "0.5", "11.0"),
// booleans "True"/"False". Categorical columns keep their category order
// (including unused categories); others list labels in order of first appearance.
struct Column {
  static constexpr int32_t kMissing = -1;
  std::string name;
  ColumnKind kind = ColumnKind::kString;
  bool ordered = false;
  std::vector<std::string> labels;
  std::vector<int32_t> codes;

  int64_t CountMissing() const;
  // Number of distinct labels that occur at least once (pandas' nunique()).
  int64_t CountDistinctPresent() const;
};

// Describes a dataframe without reading its columns.
struct DataFrameInfo {
  std::string group;                      // "obs", "var", "raw/var", "raw.var"
  std::string index_name;                 // name of the index column ("_index", "index", ...)
  std::vector<std::string> column_names;  // in the file's column order, index excluded
  int64_t n_rows = 0;
};

using cellcube::SparseBlock;

struct StreamOptions {
  // Target number of values per block; blocks always hold whole rows (columns).
  int64_t target_values = int64_t{1} << 22;
  // Read gzip-chunked or contiguous sparse parts straight from the file (pread +
  // libdeflate) so several threads inflate at once; off = everything through HDF5.
  bool direct_reads = true;
};

// Reads one matrix in blocks of whole rows (columns for CSC), in bounded memory.
// Validates the structure as it goes (indptr when opened, indices in each block) and
// fails with a clear error when it is broken.
class MatrixStream {
 public:
  virtual ~MatrixStream() = default;
  // True when blocks run over rows (CSR, dense), false for columns (CSC).
  virtual bool by_rows() const = 0;
  // How many blocks the matrix is cut into.
  virtual int64_t num_blocks() const = 0;
  // Reads block `index`. Thread-safe: threads may read different blocks at once
  // (what goes through HDF5 serialises on its lock).
  virtual Status ReadBlock(int64_t index, SparseBlock* block) const = 0;
  // Sequential convenience: fills the next block, false when exhausted. Not thread-safe.
  Result<bool> Next(SparseBlock* block) {
    if (next_ >= num_blocks()) return false;
    CC_RETURN_IF_ERROR(ReadBlock(next_++, block));
    return true;
  }

 private:
  int64_t next_ = 0;
};

class File {
 public:
  // Opens and validates the file's metadata: AnnData layout, obs/var lengths, matrix
  // encodings and shapes, and that every filter can be decoded.
  static Result<std::unique_ptr<File>> Open(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const;
  // "anndata >= 0.8", "anndata 0.7" or "anndata 0.6 (legacy)"; a guess from the layout.
  const std::string& layout() const;
  int64_t n_obs() const;
  int64_t n_vars() const;
  const std::vector<MatrixInfo>& matrices() const;  // X, raw, then layers in name order

  // Resolves "auto" | "X" | "raw" | "layers/NAME" | an HDF5 path to a present matrix.
  // auto = raw/X if present, else layers/counts, else X.
  Result<MatrixInfo> ResolveMatrix(const std::string& spec) const;

  Result<DataFrameInfo> ObsInfo() const;
  // The var dataframe that describes `matrix`'s columns (raw/var for raw matrices).
  Result<DataFrameInfo> VarInfo(const std::string& matrix_path = "X") const;

  // Reads one column of obs (or of the var of `matrix_path`). An unknown name is a
  // NotFound error that suggests near names.
  Result<Column> ReadObsColumn(const std::string& name) const;
  Result<Column> ReadVarColumn(const std::string& name, const std::string& matrix_path = "X") const;
  // The index as strings.
  Result<std::vector<std::string>> ReadObsIndex() const;
  Result<std::vector<std::string>> ReadVarIndex(const std::string& matrix_path = "X") const;

  Result<std::unique_ptr<MatrixStream>> StreamMatrix(const std::string& matrix_path,
                                                     const StreamOptions& options = {}) const;

  // Reads up to `max_values` stored values from the start of the matrix, as float64
  // (for deciding the transform).
  Result<std::vector<double>> SampleValues(const std::string& matrix_path,
                                           int64_t max_values) const;

  // Generic access for files cellcube wrote itself (the store): any dataframe group,
  // and whole 1-D datasets at a path.
  Result<DataFrameInfo> DataFrameAt(const std::string& group) const;
  Result<Column> ReadColumnAt(const DataFrameInfo& frame, const std::string& name) const;
  Result<std::vector<std::string>> ReadIndexAt(const DataFrameInfo& frame) const;
  Result<std::vector<double>> ReadDoubles(const std::string& dataset) const;
  Result<std::vector<int64_t>> ReadIntegers(const std::string& dataset) const;
  // The shape of a dataset (empty for a scalar).
  Result<std::vector<int64_t>> ShapeOf(const std::string& dataset) const;
  // A uint8 dataset of any rank, row-major, into `out` (exactly `bytes` long, the
  // dataset's size): e.g. a packed bitset, read straight into where it is used.
  Status ReadBytesInto(const std::string& dataset, void* out, uint64_t bytes) const;
  Result<std::vector<std::string>> ReadStrings(const std::string& dataset) const;
  // A scalar or 1-element string dataset or a string attribute of the root ("/").
  Result<std::string> ReadScalarString(const std::string& dataset) const;
  bool Exists(const std::string& path) const;

  // Where a dataset's bytes lie in the file, for reading it in place (mmap).
  struct Extent {
    bool in_place = false;  // contiguous, unfiltered, little-endian numbers or fixed strings
    uint64_t offset = 0;    // file offset of the first byte (when in_place)
    uint64_t bytes = 0;     // stored size
    std::string dtype;      // "int32", "float32", "string", ...
    int64_t elements = 0;
    uint64_t string_width = 0;  // fixed-width NUL-padded strings: bytes each; else 0
  };
  Result<Extent> Locate(const std::string& dataset) const;

  struct Impl;

 private:
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cellcube::h5ad
