// Reading a store's metadata (internal to src/store): shared by LoadStore and the
// memory-mapped StoreReader.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/h5ad.h"
#include "cellcube/store.h"

namespace cellcube {

// Checks the format name and version, then reads the grouping columns with their
// codes and n_cells, the gene ids and symbols, and the dataset records with their
// measured genes into `s` (its entry arrays are left untouched). Sizes of the dataset
// records are checked; the rest is for the caller to validate.
Status LoadStoreMetadata(const h5ad::File& file, StoreData* s);

// Opens the store at `path` and reads its metadata into `s`, checked as a whole
// (StoreData::ValidateMetadata); errors name the store. The file stays open for the
// caller's reads of the entry arrays.
Result<std::unique_ptr<h5ad::File>> OpenStoreMetadata(const std::string& path, StoreData* s);

// Which genes each dataset measured: bit `dataset * n_genes + gene` of the result.
std::vector<uint64_t> MeasuredGeneBits(const StoreData& s);

}  // namespace cellcube
