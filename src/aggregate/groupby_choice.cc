#include "aggregate/groupby_choice.h"

#include <algorithm>
#include <limits>

namespace cellcube::aggregate {
namespace {

constexpr uint64_t kEmptySlot = std::numeric_limits<uint64_t>::max();

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// n / d rounded down to tenths ("1.3"); d > 0.
std::string FormatMean(int64_t n, int64_t d) {
  const int64_t tenths = n * 10 / d;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
}

bool TooSmall(int64_t n_cells, int64_t n_groups) {
  return n_cells < kGroupbyMinMeanCells * n_groups;
}

std::string GroupsText(int64_t n_cells, int64_t n_groups) {
  return std::to_string(n_groups) + (n_groups == 1 ? " group, " : " groups, ") +
         (n_groups ? FormatMean(n_cells, n_groups) : "0.0") + " cells on average";
}

// Renumbers the cells' combination ids `id` (n_ids of them) joined with `col`:
// afterwards id[i] numbers the distinct (old id, code) pairs; returns how many.
int64_t JoinColumn(std::vector<int32_t>* id, int64_t n_ids, const std::vector<int32_t>& col) {
  const size_t n = id->size();
  const auto [lo_it, hi_it] = std::minmax_element(col.begin(), col.end());
  const int64_t lo = *lo_it;
  const uint64_t range = static_cast<uint64_t>(int64_t{*hi_it} - lo + 1);
  // Pairs are at most n_ids * range (< 2^31 * 2^32: no overflow) and at most n.
  const uint64_t n_pairs = static_cast<uint64_t>(n_ids) * range;
  int32_t next = 0;
  if (n_pairs <= 2 * static_cast<uint64_t>(n) + 1024) {
    std::vector<int32_t> table(n_pairs, -1);
    for (size_t i = 0; i < n; ++i) {
      int32_t& slot = table[static_cast<uint64_t>((*id)[i]) * range +
                            static_cast<uint64_t>(col[i] - lo)];
      if (slot < 0) slot = next++;
      (*id)[i] = slot;
    }
    return next;
  }
  int bits = 4;
  while ((uint64_t{1} << bits) < 2 * std::min<uint64_t>(n_pairs, n)) ++bits;
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  std::vector<uint64_t> keys(mask + 1, kEmptySlot);
  std::vector<int32_t> values(mask + 1);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t key =
        static_cast<uint64_t>((*id)[i]) * range + static_cast<uint64_t>(col[i] - lo);
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> (64 - bits);
    while (keys[h] != kEmptySlot && keys[h] != key) h = (h + 1) & mask;
    if (keys[h] == kEmptySlot) {
      keys[h] = key;
      values[h] = next++;
    }
    (*id)[i] = values[h];
  }
  return next;
}

}  // namespace

bool IsIdentifierLike(int64_t n_values, int64_t n_cells) {
  return n_values > kGroupbyMaxValues || 2 * n_values > n_cells;
}

Result<int64_t> CountGroups(int64_t n_cells,
                            const std::vector<const std::vector<int32_t>*>& codes) {
  if (n_cells < 0 || n_cells > std::numeric_limits<int32_t>::max())
    return Status::InvalidArgument("cannot count the groups of " + std::to_string(n_cells) +
                                   " cells");
  for (const auto* col : codes)
    if (!col || static_cast<int64_t>(col->size()) != n_cells)
      return Status::InvalidArgument("a grouping column has " +
                                     std::to_string(col ? col->size() : 0) + " codes for " +
                                     std::to_string(n_cells) + " cells");
  if (n_cells == 0) return int64_t{0};
  std::vector<int32_t> id(static_cast<size_t>(n_cells), 0);
  int64_t n_ids = 1;
  for (const auto* col : codes) {
    if (n_ids == n_cells) break;  // every cell is a group of its own already
    n_ids = JoinColumn(&id, n_ids, *col);
  }
  return n_ids;
}

Result<GroupbyChoice> ChooseDefaultGroupby(int64_t n_cells, const std::vector<int32_t>& cell_type,
                                           const std::vector<GroupbyCandidate>& candidates) {
  GroupbyChoice out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const GroupbyCandidate& c = candidates[i];
    if (!c.groupable || c.n_values < 2) continue;
    if (IsIdentifierLike(c.n_values, n_cells)) {
      out.left_out.push_back(
          {i, c.name, GroupbyLeftOut::Reason::kIdentifierLike, c.n_values, /*n_groups=*/0});
      continue;
    }
    if (!c.codes)
      return Status::InvalidArgument("group-by candidate " + Quote(c.name) + " has no codes");
    out.chosen.push_back(i);
  }
  auto count = [&]() -> Result<int64_t> {
    std::vector<const std::vector<int32_t>*> cols = {&cell_type};
    for (size_t i : out.chosen) cols.push_back(candidates[i].codes);
    return CountGroups(n_cells, cols);
  };
  CC_ASSIGN_OR_RETURN(out.n_groups, count());
  while (!out.chosen.empty() && TooSmall(n_cells, out.n_groups)) {
    // The widest column; `>=` makes the later one win a tie, so obs order decides.
    size_t widest = 0;
    for (size_t k = 1; k < out.chosen.size(); ++k)
      if (candidates[out.chosen[k]].n_values >= candidates[out.chosen[widest]].n_values)
        widest = k;
    const size_t i = out.chosen[widest];
    out.left_out.push_back({i, candidates[i].name, GroupbyLeftOut::Reason::kDropped,
                            candidates[i].n_values, out.n_groups});
    out.chosen.erase(out.chosen.begin() + static_cast<std::ptrdiff_t>(widest));
    CC_ASSIGN_OR_RETURN(out.n_groups, count());
  }
  return out;
}

std::string DescribeGroupbyChoice(const GroupbyChoice& choice,
                                  const std::vector<GroupbyCandidate>& candidates,
                                  int64_t n_cells) {
  std::string identifiers, dropped;
  for (const auto& l : choice.left_out) {
    if (l.reason == GroupbyLeftOut::Reason::kIdentifierLike) {
      identifiers += (identifiers.empty() ? "" : ", ") + Quote(l.name) +
                     " (identifier-like: " + std::to_string(l.n_values) + " distinct values in " +
                     std::to_string(n_cells) + " cells)";
    } else {
      dropped += (dropped.empty() ? "" : ", ") + Quote(l.name) + " (groups would average " +
                 FormatMean(n_cells, std::max<int64_t>(l.n_groups, 1)) + " cells)";
    }
  }
  std::string text = "--groupby default";
  if (!identifiers.empty()) text += " left out " + identifiers;
  if (!dropped.empty()) text += std::string(identifiers.empty() ? "" : ",") + " dropped " + dropped;
  text += choice.left_out.empty() ? ": " : "; ";
  if (choice.chosen.empty()) {
    text += "grouping by cell type only";
  } else {
    text += "grouping by ";
    for (size_t k = 0; k < choice.chosen.size(); ++k)
      text += (k ? ", " : "") + Quote(candidates[choice.chosen[k]].name);
  }
  return text + " (" + GroupsText(n_cells, choice.n_groups) + ")";
}

Result<std::string> SmallGroupsWarning(int64_t n_cells, const std::vector<int32_t>& cell_type,
                                       const std::vector<GroupbyCandidate>& columns) {
  std::vector<const std::vector<int32_t>*> cols = {&cell_type};
  for (const auto& c : columns) cols.push_back(c.codes);
  CC_ASSIGN_OR_RETURN(int64_t n_groups, CountGroups(n_cells, cols));
  if (!TooSmall(n_cells, n_groups)) return std::string();
  std::string text = "--groupby ";
  if (columns.empty()) text += "''";
  for (size_t k = 0; k < columns.size(); ++k) text += (k ? ", " : "") + Quote(columns[k].name);
  text += " gives " + std::to_string(n_groups) + " groups of " + FormatMean(n_cells, n_groups) +
          " cells on average; statistics of so few cells are noisy";
  if (columns.empty()) return text + " (the cell-type column alone splits the cells this finely)";
  // The widest column (the later on a tie, as the default drops them): the one to
  // reconsider first.
  size_t widest = 0;
  for (size_t k = 1; k < columns.size(); ++k)
    if (columns[k].n_values >= columns[widest].n_values) widest = k;
  return text + ": leave out columns with many values (" + Quote(columns[widest].name) + " has " +
         std::to_string(columns[widest].n_values) + "), or omit --groupby for the default";
}

}  // namespace cellcube::aggregate
