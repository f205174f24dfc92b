// Reading a store's metadata (internal to src/store): shared by LoadStore and the
// memory-mapped StoreReader.
#pragma once

#include "cellcube/h5ad.h"
#include "cellcube/store.h"

namespace cellcube {

// Checks the format name and version, then reads the grouping columns with their
// codes and n_cells, the gene ids and symbols, and the dataset records with their
// measured genes into `s` (its entry arrays are left untouched). Sizes of the dataset
// records are checked; the rest is for the caller to validate.
Status LoadStoreMetadata(const h5ad::File& file, StoreData* s);

}  // namespace cellcube
