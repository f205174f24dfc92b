// What the server answers without running a query, computed once per loaded store:
// the /meta document, gene autocomplete, and per-column label lookups for the
// faceted cell counts of /counts.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cellcube/query.h"

namespace cellcube::server {

class Catalog {
 public:
  explicit Catalog(std::shared_ptr<const QueryEngine> engine);

  const std::string& meta_json() const { return meta_json_; }

  // Genes whose symbol, then id, starts with `prefix` (case-insensitive), at most `limit`.
  std::vector<int32_t> SearchGenes(const std::string& prefix, size_t limit) const;

  // Faceted counts: per column, per value, the cells of the groups that pass every
  // filter except the column's own (the dataset column's: population.datasets and its
  // where clauses alike); plus the cells passing all filters. Errors name an unknown
  // column, value or dataset.
  struct Counts {
    std::vector<std::vector<int64_t>> per_value;  // [column][label code]; last = NA
    int64_t selected = 0;
  };
  Result<Counts> FacetCounts(const Population& population) const;
  std::string CountsJson(const Counts& counts) const;

 private:
  std::shared_ptr<const QueryEngine> engine_;
  std::string meta_json_;
  struct Key {
    std::string lower;
    int32_t gene;
  };
  std::vector<Key> symbols_, ids_;  // sorted by `lower`
};

}  // namespace cellcube::server
