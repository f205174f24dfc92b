// Internal to src/ontology: one term's ancestor list appended to the CSR arrays both the
// term maps and the embedded terms keep (ascending indices, each once, its distance).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace cellcube::ontology {

// `found`: (ancestor index, distance) pairs in any order; an ancestor listed twice keeps
// its smallest distance.
inline void AppendAncestors(std::vector<std::pair<int32_t, int32_t>> found,
                            std::vector<int32_t>* ancestors, std::vector<int32_t>* distances,
                            std::vector<int64_t>* begin) {
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end(),
                          [](const auto& x, const auto& y) { return x.first == y.first; }),
              found.end());
  for (const auto& [a, d] : found) {
    ancestors->push_back(a);
    distances->push_back(d);
  }
  begin->push_back(static_cast<int64_t>(ancestors->size()));
}

}  // namespace cellcube::ontology
