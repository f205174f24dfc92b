// Finding the matrices of a file (X, raw, layers) from metadata, and streaming one
// in blocks of whole rows (or columns for CSC).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cellcube/h5ad.h"
#include "h5ad/hdf5_util.h"

namespace cellcube::h5ad {

// Describes the matrix stored at `path` (a dense dataset or a sparse group). Errors
// name what is wrong: unknown encoding, missing parts, undecodable filter.
Result<MatrixInfo> DescribeMatrix(hid_t file, const std::string& path);

// The file opened a second time for reads that bypass HDF5 (fd < 0: none).
struct FileAccess {
  int fd = -1;
  uint64_t size = 0;
};

// Opens a stream; reads and validates indptr for sparse matrices.
Result<std::unique_ptr<MatrixStream>> OpenMatrixStream(hid_t file, const FileAccess& access,
                                                       const MatrixInfo& info,
                                                       const StreamOptions& options);

Result<std::vector<double>> ReadFirstValues(hid_t file, const MatrixInfo& info, int64_t max_values);

}  // namespace cellcube::h5ad
