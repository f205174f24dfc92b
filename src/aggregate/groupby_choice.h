// The default --groupby of `cellcube build` (docs/SCALING.md) and the warning for an explicit
// one: which obs columns split a dataset's cells into groups that still mean something.
// Pure computation over per-cell codes; no I/O, no HDF5.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::aggregate {

// A default column with more distinct values than this is identifier-like.
inline constexpr int64_t kGroupbyMaxValues = 200;
// Groups should average at least this many cells.
inline constexpr int64_t kGroupbyMinMeanCells = 5;

// True when a column with `n_values` distinct present values in `n_cells` cells looks
// like an identifier (a barcode, a clonotype, a sequence): more than kGroupbyMaxValues
// values, or more than half the cells. Such a column is never a default group-by.
bool IsIdentifierLike(int64_t n_values, int64_t n_cells);

// Whether a column names the study's design (docs/BUILD.md "Default --groupby"): one of
// the words of its name (split at anything not a letter or digit, any case) is donor,
// donors, individual, patient, subject, sample, source, condition, disease, tissue, stage,
// sex or treatment. The default drops such columns last.
bool IsDesignColumn(const std::string& name);

// One obs column that could be grouped by.
struct GroupbyCandidate {
  std::string name;
  // Per cell: the column's code, -1 = missing (missing is a value of its own, as in
  // GroupCells). May be null when the column is not groupable, has fewer than 2
  // values or IsIdentifierLike: the choice never looks at those codes.
  const std::vector<int32_t>* codes = nullptr;
  int64_t n_values = 0;    // distinct present values (pandas' nunique())
  bool groupable = false;  // categorical or boolean; numbers and strings never are
};

// A candidate the default left out, and why.
struct GroupbyLeftOut {
  enum class Reason {
    kIdentifierLike,  // IsIdentifierLike(n_values, n_cells)
    kDropped,         // with it, groups averaged fewer than kGroupbyMinMeanCells cells
  };
  size_t index = 0;  // into the candidates
  std::string name;
  Reason reason = Reason::kIdentifierLike;
  int64_t n_values = 0;
  int64_t n_groups = 0;  // kDropped: the groups with this column still in
};

struct GroupbyChoice {
  std::vector<size_t> chosen;            // indices into the candidates, in their order
  std::vector<GroupbyLeftOut> left_out;  // identifier-like ones in candidate order, then
                                         // the dropped ones in the order they were dropped
  int64_t n_groups = 0;                  // groups of the cell type + the chosen columns
};

// The number of distinct combinations of the columns' codes over `n_cells` cells (what
// GroupCells would number; every code, -1 included, is a value of its own). Every
// column must have `n_cells` codes; no columns = one group (none without cells).
// Costs O(cells) time and memory per column, with a dense table or an open-addressing
// hash of (combination so far, code) pairs.
Result<int64_t> CountGroups(int64_t n_cells, const std::vector<const std::vector<int32_t>*>& codes);
// The same for every prefix in one pass: element m is the number of groups of the
// first m columns (so element 0 is 1, or 0 without cells).
Result<std::vector<int64_t>> CountPrefixGroups(
    int64_t n_cells, const std::vector<const std::vector<int32_t>*>& codes);

// The default --groupby of one dataset (docs/SCALING.md): of the candidates (the obs columns
// in obs order, the cell-type column and the store's own column names excluded), takes
// every groupable one with 2 or more distinct values (fewer cannot split: skipped
// silently) that is not IsIdentifierLike (left out); then, while the groups of the cell
// type + the chosen columns average fewer than kGroupbyMinMeanCells cells (counted
// exactly), drops a chosen column and counts again: first the columns that are not
// IsDesignColumn, then the design columns, each time the one with the most distinct
// values (on a tie, the later one in obs order). May end with no column: cell type alone. All the
// counts come from one CountPrefixGroups pass over the columns ordered by values.
Result<GroupbyChoice> ChooseDefaultGroupby(int64_t n_cells, const std::vector<int32_t>& cell_type,
                                           const std::vector<GroupbyCandidate>& candidates);

// The build's note on the default (docs/BUILD.md "Default --groupby"): a head line
// `lead` + "--groupby default: grouping by 'sample', 'patient' (40 groups, 5.0 cells on
// average)", then, for what was left out, "  left out as identifier-like (distinct
// values in 200 cells): 'clone_id' (150), ..." and "  dropped, in this order (cells per
// group with it still in): 'cdr3' (1.3), ...", each list wrapped at 100 columns with
// continuation lines indented by 4. Lines are joined by '\n' (none at the end).
// Averages are rounded down to tenths, so one below 5 never reads "5.0".
std::string DescribeGroupbyChoice(const GroupbyChoice& choice,
                                  const std::vector<GroupbyCandidate>& candidates, int64_t n_cells,
                                  const std::string& lead = "");

// For an explicit --groupby (`columns`, as given, with their codes; all are honoured):
// "" when the groups of the cell type + the columns average kGroupbyMinMeanCells cells
// or more, else one warning line ("--groupby 'a', 'b' gives 180 groups of 1.1 cells on
// average; ...").
Result<std::string> SmallGroupsWarning(int64_t n_cells, const std::vector<int32_t>& cell_type,
                                       const std::vector<GroupbyCandidate>& columns);

}  // namespace cellcube::aggregate
