// The rules every stored entry obeys (docs/FORMAT.md, "Validation"), in one place for
// every reader of entries: the memory-mapped StoreReader (per gene, on first use), the
// streaming store source of add/remove/merge, and StoreData::Validate.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "cellcube/store_data.h"
#include "histogram/record.h"

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

// Why an entry's histogram record (`length` bytes at `p`) breaks the rules
// (docs/FORMAT.md "Histograms"), or nullptr: an entry of a dataset with negative values
// (`not_binned`) has an empty record; any other holds exactly one record of its nnz
// cells, which decodes (histogram::ReadRecord) to exactly `length` bytes.
inline const char* RecordFault(const uint8_t* p, uint64_t length, uint64_t nnz, bool not_binned) {
  if (not_binned) return length == 0 ? nullptr : "its dataset is not binned but it has a record";
  const char* why = nullptr;
  const size_t read = histogram::SkipRecord(p, length, nnz, &why);
  if (why) return why;
  return read == length ? nullptr : "its histogram record is followed by stray bytes";
}

// Where each dataset's groups start among the store's (docs/FORMAT.md: a dataset's
// groups are consecutive, datasets in order): starts[d] for d in [0, datasets], the last
// being the number of groups; empty when the dataset codes are not in that order.
inline std::vector<int64_t> DatasetGroupStarts(const std::vector<int32_t>& dataset_of_group,
                                               size_t n_datasets) {
  std::vector<int64_t> starts(n_datasets + 1, 0);
  int32_t previous = 0;
  for (size_t g = 0; g < dataset_of_group.size(); ++g) {
    const int32_t d = dataset_of_group[g];
    if (d < previous || d < 0 || static_cast<size_t>(d) >= n_datasets) return {};
    for (int32_t k = previous + 1; k <= d; ++k) starts[static_cast<size_t>(k)] = int64_t(g);
    previous = d;
  }
  for (size_t k = static_cast<size_t>(previous) + 1; k <= n_datasets; ++k)
    starts[k] = static_cast<int64_t>(dataset_of_group.size());
  return starts;
}

// One row of raw.cellcube/entry_offsets: for a gene's `n` entries (their groups
// ascending), out[d] = how many lie before dataset d's first group, for every dataset.
template <typename Group>
void EntryOffsetsOfGene(const Group* groups, size_t n, const std::vector<int64_t>& starts,
                        uint32_t* out) {
  size_t k = 0;
  for (size_t d = 0; d + 1 < starts.size(); ++d) {
    while (k < n && static_cast<int64_t>(groups[k]) < starts[d]) ++k;
    out[d] = static_cast<uint32_t>(k);
  }
}

}  // namespace cellcube
