// Reading a store's metadata (internal to src/store): shared by LoadStore, `info`, the
// streaming store source and the memory-mapped StoreReader.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/h5ad.h"
#include "cellcube/store_data.h"

namespace cellcube {

// The names of a store's entry arrays for its format version.
struct EntryArrayNames {
  std::string indptr, indices, nnz, sum, second;  // second: m2 (format 2) or sumsq (1)
  std::string sum_indptr, sum_indices, second_indptr, second_indices;  // hard links
};
EntryArrayNames EntryArraysOf(int format_version);

// A store file's bytes mapped in memory, so that metadata arrays can be read in place.
struct MappedBytes {
  const char* data = nullptr;
  uint64_t size = 0;
};

struct MetadataOptions {
  // Also fill each record's measured_genes list (from the bits).
  bool measured_gene_lists = false;
  // The gene ids and symbols: into StoreData's vectors (kStrings), into StoreMetadata's
  // lists, in place in `map` where the store holds them as fixed-width strings
  // (kLists: the StoreReader's form), or only their count (kCountOnly: `info`).
  enum class Names { kStrings, kLists, kCountOnly };
  Names names = Names::kStrings;
  // The same file, mapped: the measured-gene bits and the name lists are then views of
  // it, and the result must not outlive the mapping.
  MappedBytes map;
};

// Checks the format name and version, then reads the grouping columns with their codes
// and n_cells, the gene names (per `options`), the dataset records, and which genes each
// dataset measured (as bits). Everything read is checked (StoreData::ValidateMetadata,
// the bitset's shape, padding and counts); `n_entries` is left 0 for the caller.
Result<StoreMetadata> LoadStoreMetadata(const h5ad::File& file, const MetadataOptions& options);

// Opens the store at `path` and reads its metadata (with the gene lists); errors name
// the store. The file stays open for the caller's reads of the entry arrays.
Result<std::unique_ptr<h5ad::File>> OpenStoreMetadata(const std::string& path, StoreMetadata* out);

// The bits of the records' measured_genes lists.
MeasuredBits MeasuredGeneBits(const StoreData& s);

}  // namespace cellcube
