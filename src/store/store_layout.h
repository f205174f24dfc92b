// Names of the store's parts inside the .h5ad (docs/FORMAT.md), shared by the writer
// and the readers.
#pragma once

namespace cellcube::store_layout {

inline constexpr const char* kFormatName = "cellcube store";
inline constexpr const char* kNCellsColumn = "n_cells";
inline constexpr const char* kSymbolColumn = "symbol";
inline constexpr const char* kLayersGroup = "layers";
inline constexpr const char* kLayerNnz = "nnz";
inline constexpr const char* kLayerSum = "sum";
inline constexpr const char* kLayerM2 = "m2";
inline constexpr const char* kLayerSumsq = "sumsq";   // format 1 only
inline constexpr const char* kMeasured = "measured";  // format 2: packed bits
inline constexpr const char* kUnsGroup = "uns/cellcube";
// Format 3: the histogram layer's layout, in uns/cellcube (absent: no histograms).
inline constexpr const char* kHistograms = "histograms";
// The embedded ontology terms, in uns/cellcube (absent: no ontologies; docs/FORMAT.md
// "Ontology terms").
inline constexpr const char* kOntology = "ontology";
// Format 3: arrays anndata does not load (read_h5ad skips top-level keys that start with
// "raw."): the per-(gene, dataset) offsets and the histogram records.
inline constexpr const char* kRawGroup = "raw.cellcube";
inline constexpr const char* kEntryOffsets = "raw.cellcube/entry_offsets";
inline constexpr const char* kHistData = "raw.cellcube/hist_data";
inline constexpr const char* kHistIndptr = "raw.cellcube/hist_indptr";
inline constexpr const char* kHistOffsets = "raw.cellcube/hist_offsets";

}  // namespace cellcube::store_layout
