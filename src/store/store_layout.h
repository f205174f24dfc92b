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

}  // namespace cellcube::store_layout
