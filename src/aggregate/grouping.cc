#include "aggregate/grouping.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

namespace cellcube::aggregate {
namespace {

// Hash of one cell's codes across columns.
struct KeyHash {
  size_t operator()(const std::vector<int32_t>& key) const {
    uint64_t h = 1469598103934665603ull;
    for (int32_t c : key) h = (h ^ static_cast<uint32_t>(c)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

// Orders codes with missing (-1) after every present value.
int64_t SortKey(int32_t code) { return code < 0 ? INT64_MAX : code; }

}  // namespace

Result<Grouping> GroupCells(const std::vector<const std::vector<int32_t>*>& codes,
                            const std::vector<std::string>& names,
                            const std::vector<int64_t>& n_values, int64_t max_groups) {
  const size_t n_cols = codes.size();
  const size_t n_cells = n_cols ? codes[0]->size() : 0;
  std::unordered_map<std::vector<int32_t>, int32_t, KeyHash> first_ids;
  std::vector<std::vector<int32_t>> keys;
  std::vector<int32_t> provisional(n_cells);
  std::vector<int32_t> key(n_cols);
  for (size_t i = 0; i < n_cells; ++i) {
    for (size_t c = 0; c < n_cols; ++c) key[c] = (*codes[c])[i];
    auto [it, inserted] = first_ids.emplace(key, static_cast<int32_t>(keys.size()));
    if (inserted) {
      keys.push_back(key);
      if (static_cast<int64_t>(keys.size()) > max_groups) {
        std::vector<size_t> order(n_cols);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(),
                  [&](size_t a, size_t b) { return n_values[a] > n_values[b]; });
        std::string worst;
        for (size_t k = 0; k < order.size() && k < 3; ++k)
          worst += (k ? ", " : "") + names[order[k]] + " (" + std::to_string(n_values[order[k]]) +
                   " values)";
        return Status::InvalidArgument(
            "more than " + std::to_string(max_groups) +
            " cell groups; the columns with the most distinct values are " + worst +
            "; leave some out with --groupby or raise --max-groups");
      }
    }
    provisional[i] = it->second;
  }
  // Renumber groups in sorted order of their codes, for a stable, readable store.
  std::vector<int32_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    for (size_t c = 0; c < n_cols; ++c) {
      int64_t x = SortKey(keys[a][c]), y = SortKey(keys[b][c]);
      if (x != y) return x < y;
    }
    return false;
  });
  std::vector<int32_t> final_id(keys.size());
  for (size_t g = 0; g < order.size(); ++g) final_id[order[g]] = static_cast<int32_t>(g);

  Grouping out;
  out.group_codes.assign(n_cols, std::vector<int32_t>(keys.size()));
  out.n_cells.assign(keys.size(), 0);
  for (size_t g = 0; g < keys.size(); ++g)
    for (size_t c = 0; c < n_cols; ++c) out.group_codes[c][final_id[g]] = keys[g][c];
  out.group_of_cell.resize(n_cells);
  for (size_t i = 0; i < n_cells; ++i) {
    int32_t g = final_id[provisional[i]];
    out.group_of_cell[i] = g;
    ++out.n_cells[g];
  }
  return out;
}

}  // namespace cellcube::aggregate
