#include "aggregate/groupby_choice.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include "util/text.h"

namespace cellcube::aggregate {
namespace {

constexpr uint64_t kEmptySlot = std::numeric_limits<uint64_t>::max();

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// The indent of a note's wrapped continuation lines.
const char* const kNoteIndent = "    ";

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
      int32_t& slot =
          table[static_cast<uint64_t>((*id)[i]) * range + static_cast<uint64_t>(col[i] - lo)];
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

Result<std::vector<int64_t>> CountPrefixGroups(
    int64_t n_cells, const std::vector<const std::vector<int32_t>*>& codes) {
  if (n_cells < 0 || n_cells > std::numeric_limits<int32_t>::max())
    return Status::InvalidArgument("cannot count the groups of " + std::to_string(n_cells) +
                                   " cells");
  for (const auto* col : codes)
    if (!col || static_cast<int64_t>(col->size()) != n_cells)
      return Status::InvalidArgument("a grouping column has " +
                                     std::to_string(col ? col->size() : 0) + " codes for " +
                                     std::to_string(n_cells) + " cells");
  std::vector<int64_t> counts = {std::min<int64_t>(n_cells, 1)};
  std::vector<int32_t> id(static_cast<size_t>(n_cells), 0);
  for (const auto* col : codes) {
    // Once every cell is a group of its own, further columns change nothing.
    const int64_t n_ids = counts.back();
    counts.push_back(n_ids == n_cells ? n_ids : JoinColumn(&id, n_ids, *col));
  }
  return counts;
}

Result<int64_t> CountGroups(int64_t n_cells,
                            const std::vector<const std::vector<int32_t>*>& codes) {
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> counts, CountPrefixGroups(n_cells, codes));
  return counts.back();
}

bool IsDesignColumn(const std::string& name) {
  static const char* const kWords[] = {"donor",  "donors",    "individual", "patient", "subject",
                                       "sample", "source",    "condition",  "disease", "tissue",
                                       "stage",  "treatment", "sex"};
  std::string word;
  auto is_design = [&] {
    for (const char* w : kWords)
      if (word == w) return true;
    return false;
  };
  for (size_t i = 0; i <= name.size(); ++i) {
    const char c = i < name.size() ? name[i] : '\0';
    if (std::isalnum(static_cast<unsigned char>(c))) {
      word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      continue;
    }
    if (is_design()) return true;
    word.clear();
  }
  return false;
}

Result<GroupbyChoice> ChooseDefaultGroupby(int64_t n_cells, const std::vector<int32_t>& cell_type,
                                           const std::vector<GroupbyCandidate>& candidates) {
  GroupbyChoice out;
  std::vector<size_t> kept;  // the candidates that pass the first two rules
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
    kept.push_back(i);
  }
  // The drop loop always drops the remaining column that comes last in the order
  // (design column, values, obs position): other columns before the study's design, the
  // widest first, the later in obs order on a tie. So the columns left after each drop
  // are a prefix of that order, and one pass counting the groups of every prefix gives
  // every count the loop needs, exactly.
  std::vector<size_t> order = kept;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const bool da = IsDesignColumn(candidates[a].name), db = IsDesignColumn(candidates[b].name);
    if (da != db) return da;
    return candidates[a].n_values < candidates[b].n_values;
  });
  std::vector<const std::vector<int32_t>*> cols = {&cell_type};
  for (size_t i : order) cols.push_back(candidates[i].codes);
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> counts, CountPrefixGroups(n_cells, cols));
  size_t n_kept = order.size();  // groups of cell type + order[0, n_kept): counts[1 + n_kept]
  while (n_kept > 0 && TooSmall(n_cells, counts[1 + n_kept])) {
    const size_t i = order[n_kept - 1];
    out.left_out.push_back({i, candidates[i].name, GroupbyLeftOut::Reason::kDropped,
                            candidates[i].n_values, counts[1 + n_kept]});
    --n_kept;
  }
  out.n_groups = counts[1 + n_kept];
  std::vector<bool> stays(candidates.size(), false);
  for (size_t k = 0; k < n_kept; ++k) stays[order[k]] = true;
  for (size_t i : kept)  // in obs order
    if (stays[i]) out.chosen.push_back(i);
  return out;
}

std::string DescribeGroupbyChoice(const GroupbyChoice& choice,
                                  const std::vector<GroupbyCandidate>& candidates, int64_t n_cells,
                                  const std::string& lead) {
  // A head line with the outcome, then one wrapped list per reason (util/text.h WrapList):
  // wu2020 left out 5 columns and dropped 33, which made one line of 1,900 characters.
  std::vector<std::string> chosen, identifiers, dropped;
  for (size_t i : choice.chosen) chosen.push_back(Quote(candidates[i].name));
  if (chosen.empty()) chosen.push_back("cell type only");
  chosen.back() += " (" + GroupsText(n_cells, choice.n_groups) + ")";
  for (const auto& l : choice.left_out) {
    if (l.reason == GroupbyLeftOut::Reason::kIdentifierLike)
      identifiers.push_back(Quote(l.name) + " (" + std::to_string(l.n_values) + ")");
    else
      dropped.push_back(Quote(l.name) + " (" +
                        FormatMean(n_cells, std::max<int64_t>(l.n_groups, 1)) + ")");
  }
  std::string text = WrapList(chosen, lead + "--groupby default: grouping by", kNoteIndent);
  if (!identifiers.empty())
    text += WrapList(
        identifiers,
        "  left out as identifier-like (distinct values in " + std::to_string(n_cells) + " cells):",
        kNoteIndent);
  if (!dropped.empty())
    text += WrapList(dropped,
                     "  dropped, in this order (cells per group with it still in):", kNoteIndent);
  text.pop_back();  // WrapList ends every line with '\n'; a note is printed as a line
  return text;
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
