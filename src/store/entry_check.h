// Checking a StoreReader's entries where they are read (docs/SCALING.md): the search that
// finds a dataset's entries within a gene, and the check of a span of entries against
// EntryFault's rules. Shared by the checks on the mapping (reader.cc) and on entries
// copied out of the file (entry_copy.cc), so both find and check the same entries.
#pragma once

#include <cstdint>
#include <string>

#include "cellcube/store_reader.h"
#include "store/entry_rules.h"
#include "store/store_entries.h"

namespace cellcube::entry_check {

// The first k in [lo, hi) with idx[k] >= target, by bisection: on ascending groups the
// lower bound; on damaged ones still some k in [lo, hi], the same on every call.
template <typename Index>
int64_t FirstAtLeast(const Index* idx, int64_t lo, int64_t hi, int64_t target) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(idx[mid]) < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Within a gene's `n` groups `gene_idx`, the entries [begin, end) of the groups
// [group_begin, group_end): a pure function of the groups, so every caller that gives
// the same gene finds the same entries, damaged or not.
template <typename Index>
EntryRange LocateGroups(const Index* gene_idx, int64_t n, int64_t group_begin, int64_t group_end) {
  const int64_t begin = FirstAtLeast(gene_idx, 0, n, group_begin);
  return {begin, FirstAtLeast(gene_idx, begin, n, group_end)};
}

constexpr const char* kNotAscending = "its group does not ascend within its gene";

// A broken entry: its position in the gene's entries and why.
struct Fault {
  int64_t at = -1;  // -1: none
  const char* why = nullptr;
};

// Whether the entries just outside `range` (gene-local) of a gene's `n` groups hold
// groups of [group_begin, group_end): then the range, found by LocateGroups in groups
// that do not ascend, may not hold all of them, and the gene is damaged.
template <typename Index>
Fault NeighbourFault(const Index* gene_idx, int64_t n, EntryRange range, int64_t group_begin,
                     int64_t group_end) {
  if (range.begin > 0 && gene_idx[range.begin - 1] >= group_begin)
    return {range.begin - 1, kNotAscending};
  if (range.end < n && gene_idx[range.end] < group_end) return {range.end, kNotAscending};
  return {};
}

// The first of `n` consecutive entries of `gene` (groups `idx`, and their nnz, sum and
// second moment) that breaks the rules or lies outside [group_begin, group_end).
template <typename Index, typename Nnz, typename Sum, typename Second>
Fault SpanFault(const StoreReader& r, int64_t gene, const Index* idx, const Nnz* nnz,
                const Sum* sum, const Second* second, int64_t n, int64_t group_begin,
                int64_t group_end) {
  const StoreData& m = r.meta();
  const EntryContext context{r.n_groups(), m.n_cells.data(), m.codes[0].data(), &r.measured()};
  const bool sumsq = r.second_moment_is_sumsq();
  int64_t previous = -1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t group = idx[k];
    const double s1 = static_cast<double>(sum[k]);
    double m2 = static_cast<double>(second[k]);
    if (sumsq && group >= 0 && group < r.n_groups())
      m2 = M2FromSumsq(s1, m2, m.n_cells[static_cast<size_t>(group)]);
    if (const char* why = EntryFault(context, gene, group, previous, nnz[k], s1, m2))
      return {k, why};
    if (group < group_begin || group >= group_end) return {k, kNotAscending};
    previous = group;
  }
  return {};
}

// The error for a broken entry (`entry`: its index in the store's entry arrays).
inline Status Damaged(const StoreReader& r, int64_t gene, int64_t entry, const char* why) {
  return Status::Corrupt("store '" + r.path() + "' is damaged: entry " + std::to_string(entry) +
                         " of gene '" + std::string(r.gene_ids()[static_cast<size_t>(gene)]) +
                         "': " + why + " (rebuild it)");
}

}  // namespace cellcube::entry_check
