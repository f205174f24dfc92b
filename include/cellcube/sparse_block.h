// A block of a matrix as compressed sparse vectors: the unit the reader produces and
// the aggregation consumes. Plain data; no library types.
#pragma once

#include <cstdint>
#include <vector>

namespace cellcube {

// Compressed sparse vectors along the major axis: rows for CSR and dense matrices,
// columns for CSC. Dense blocks drop exact zeros, which no statistic cellcube
// computes can see.
struct SparseBlock {
  int64_t major_begin = 0;       // first row (or column) of the block
  int64_t major_count = 0;       // rows (or columns) in the block
  std::vector<int64_t> offsets;  // major_count + 1 entries, offsets[0] == 0
  std::vector<int32_t> minor;    // column (or row) of each value, checked in range
  std::vector<double> values;    // converted to float64, NaN/inf passed through
  // The reader's working space, kept with the block so that reading into a reused
  // block allocates (and faults in) nothing new.
  std::vector<int64_t> scratch;
};

}  // namespace cellcube
