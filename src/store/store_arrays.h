// The five entry arrays of a store (docs/FORMAT.md, "layers"), located and checked in
// one place for both readers of the format: the memory-mapped StoreReader (queries) and
// the pread StoreFileSource (add, remove, merge). Internal to src/store (and the query
// engine's scans, which read the arrays through store_entries.h).
//
// Every number here comes from the file and is checked before use: dtypes against what
// the format allows, element counts against the genes and each other, and the extent of
// an array stored in place against the file's size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cellcube/h5ad.h"
#include "cellcube/status.h"

namespace cellcube {

// The element type of a store array.
enum class ArrayType { kInt32, kInt64, kUInt16, kUInt32, kFloat32, kFloat64, kUInt8 };
const char* ArrayTypeName(ArrayType t);
size_t ArrayWidth(ArrayType t);

// The ArrayType of element type T (a compile error for a type no store array holds).
template <typename T>
constexpr ArrayType ArrayTypeOf() {
  if constexpr (std::is_same_v<T, int32_t>)
    return ArrayType::kInt32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return ArrayType::kInt64;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return ArrayType::kUInt8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return ArrayType::kUInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return ArrayType::kUInt32;
  else if constexpr (std::is_same_v<T, float>)
    return ArrayType::kFloat32;
  else {
    static_assert(std::is_same_v<T, double>, "no store array holds this element type");
    return ArrayType::kFloat64;
  }
}

// One array as the file holds it.
struct LocatedArray {
  std::string path;  // its HDF5 path
  ArrayType type = ArrayType::kInt32;
  int64_t elements = 0;
  // Contiguous, unfiltered and little-endian on a little-endian machine: its
  // elements * width bytes start at `offset`, inside the file. Else it is read whole
  // through HDF5 (ReadWhole).
  bool in_place = false;
  uint64_t offset = 0;
  // In place at an offset that is a multiple of its width: readable where it lies in a
  // mapping of the file.
  bool aligned() const { return in_place && offset % ArrayWidth(type) == 0; }
  uint64_t bytes() const { return static_cast<uint64_t>(elements) * ArrayWidth(type); }
};

// The entry arrays of one store, the pattern shared by the three layers, and format 3's
// arrays outside the layers (docs/FORMAT.md "raw.cellcube"): absent (an empty path) in
// older formats, the histogram arrays also in a store built without histograms.
struct StoreArrays {
  LocatedArray indptr, indices, nnz, sum, second;  // second: m2, or format 1's sumsq
  int64_t n_entries = 0;                           // indices' length
  // uint32[genes × datasets]: where each dataset's entries start within each gene.
  LocatedArray entry_offsets;
  // uint8 records, int64[genes + 1] byte offsets per gene, uint32[genes × datasets]
  // where each dataset's records start within each gene.
  LocatedArray hist_data, hist_indptr, hist_offsets;
  bool has_entry_offsets() const { return !entry_offsets.path.empty(); }
  bool has_histograms() const { return !hist_data.path.empty(); }
};

// Locates the entry arrays of a store of `format_version` with `n_genes` genes in `file`
// (`file_size` bytes). indptr and indices are int32 or int64 alike; nnz uint16 or uint32
// (uint32 in format 1); sum and second float32 or float64 (one type in format 1);
// indptr has n_genes + 1 elements and the others one per entry (indices' length); an
// in-place array lies inside the file. indptr's values are the caller's to check, as a
// whole, before any entry is read (ascending from 0 to the number of entries). Corrupt naming the
// array otherwise. The layers' links to the shared pattern are the StoreReader's to check
// (SamePattern).
// Format 3 adds entry_offsets (unless raw.cellcube is gone: a store re-saved by
// anndata reads as format 2), and the histogram arrays when `histograms` (the metadata
// says the store has them): their types and shapes are checked here, their values where
// they are read.
Result<StoreArrays> LocateStoreArrays(const h5ad::File& file, int format_version, int64_t n_genes,
                                      int64_t n_datasets, bool histograms, uint64_t file_size);

// The array at `path`, of the same type and length as `like` (a layer's link to the
// shared pattern, or a copy of it): Corrupt otherwise.
Result<LocatedArray> LocateLike(const h5ad::File& file, const std::string& path,
                                const LocatedArray& like, uint64_t file_size);

// An array read whole through HDF5, as its own type, into 8-byte words (so that any
// element type is aligned): for arrays not in place (re-saved chunked or compressed).
Result<std::vector<uint64_t>> ReadWhole(const h5ad::File& file, const LocatedArray& array);

}  // namespace cellcube
