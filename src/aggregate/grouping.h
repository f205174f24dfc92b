// Cell groups: the distinct combinations of the grouping columns' values in one
// dataset, numbered in sorted order of their codes (missing values last).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::aggregate {

struct Grouping {
  std::vector<int32_t> group_of_cell;             // per cell: its group
  std::vector<std::vector<int32_t>> group_codes;  // [column][group]: the column's code, -1 = NA
  std::vector<int64_t> n_cells;                   // per group
  int32_t n_groups() const { return static_cast<int32_t>(n_cells.size()); }
};

// `codes[c][i]` is column c's code for cell i (-1 = missing); all columns have the
// same length. More than `max_groups` groups is an InvalidArgument error naming the
// columns (`names`, with `n_values` distinct values each) that contribute most.
Result<Grouping> GroupCells(const std::vector<const std::vector<int32_t>*>& codes,
                            const std::vector<std::string>& names,
                            const std::vector<int64_t>& n_values, int64_t max_groups);

}  // namespace cellcube::aggregate
