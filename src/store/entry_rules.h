// The rules every stored entry obeys (docs/FORMAT.md, "Validation"), in one place for
// every reader of entries: the memory-mapped StoreReader (per gene, on first use), the
// streaming store source of add/remove/merge, and StoreData::Validate.
#pragma once

#include <cmath>
#include <cstdint>

#include "cellcube/store_data.h"

namespace cellcube {

// m2 from an entry's Σv and Σv² (format-1 stores), in float64; rounding can leave it
// slightly negative, which means 0. A damaged Σv² (negative or NaN) gives NaN, which
// EntryFault's second-moment rule refuses, so every reader rejects it the same way.
inline double M2FromSumsq(double sum, double sumsq, int64_t n_cells) {
  if (!(sumsq >= 0)) return std::nan("");
  const double m2 = sumsq - sum * (sum / static_cast<double>(n_cells));
  return m2 < 0 ? 0 : m2;
}

// What the rules need to know about the groups and datasets.
struct EntryContext {
  int64_t n_groups = 0;
  const int64_t* n_cells = nullptr;        // per group
  const int32_t* group_dataset = nullptr;  // per group
  const MeasuredBits* measured = nullptr;
};

// Why entry (group, nnz, sum, m2) of `gene` breaks the rules, or nullptr when it keeps
// them. `previous_group` is the group of the gene's entry before it (-1 for the first).
inline const char* EntryFault(const EntryContext& c, int64_t gene, int64_t group,
                              int64_t previous_group, double nnz, double sum, double m2) {
  if (group < 0 || group >= c.n_groups) return "its group is out of range";
  if (group <= previous_group) return "its group does not ascend within its gene";
  if (!c.measured->Get(c.group_dataset[group], gene))
    return "it lies in a gene its group's dataset did not measure";
  if (!(nnz >= 0 && nnz <= static_cast<double>(c.n_cells[group])) || nnz != std::floor(nnz))
    return "its nnz is not a count of its group's cells";
  if (!std::isfinite(sum)) return "its sum is not finite";
  if (!(m2 >= 0) || !std::isfinite(m2))
    return "its m2 (format 1: sumsq) is not a finite non-negative number";
  return nullptr;
}

}  // namespace cellcube
