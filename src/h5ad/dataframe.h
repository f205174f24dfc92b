// obs/var dataframes in the three on-disk layouts:
//  - anndata >= 0.8: a group (encoding-type=dataframe) whose columns are datasets or
//    encoded groups (categorical, nullable-integer, nullable-boolean, ...);
//  - anndata 0.7: a group whose categorical columns are code datasets carrying an
//    object-reference attribute `categories` into `__categories/`;
//  - anndata 0.6: one compound dataset, categories in `uns/<column>_categories`.
#pragma once

#include <string>
#include <vector>

#include "cellcube/h5ad.h"
#include "h5ad/hdf5_util.h"

namespace cellcube::h5ad {

// `path` is "obs", "var", "raw/var" or "raw.var".
Result<DataFrameInfo> ReadDataFrameInfo(hid_t file, const std::string& path);
Result<std::vector<std::string>> ReadDataFrameIndex(hid_t file, const DataFrameInfo& info);
// `name` must be one of info.column_names (NotFound with suggestions otherwise).
Result<Column> ReadDataFrameColumn(hid_t file, const DataFrameInfo& info, const std::string& name);

}  // namespace cellcube::h5ad
