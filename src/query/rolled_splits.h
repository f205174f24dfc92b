// A rolled-up answer's rows (docs/ONTOLOGY.md "Roll-up"; internal to src/query): the
// engine first pools the selected groups by their plain values (the base splits), then
// each output split sums the base splits whose values fall in it: for a rolled-up column
// the terms whose subtree holds the value, so a base split counts once in each of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "query/engine_internal.h"

namespace cellcube::query {

// `by`: the split columns; `rolled`: per by-column whether it is rolled up; `selected`,
// `base_of_selected`: the selected groups and their base split; `representative`: a
// group of each base split; `pairs`: fill RolledSplits::groups/splits (what notes on
// scales need).
RolledSplits PlanRolledSplits(const StoreData& meta, const Terms& terms,
                              const std::vector<int32_t>& by, const std::vector<uint8_t>& rolled,
                              const std::vector<int32_t>& selected,
                              const std::vector<int32_t>& base_of_selected,
                              const std::vector<int32_t>& representative, bool pairs);

// out[o x genes + g] = the base splits of o pooled (sums added; with `m2`, m2 by Chan et
// al.'s pairwise formula; bins added when `base_bins` is given).
void CombineSplits(const RolledSplits& r, size_t n_genes, const std::vector<Aggregate>& base,
                   const std::vector<Bins>* base_bins, bool m2, std::vector<Aggregate>* out,
                   std::vector<Bins>* out_bins);

}  // namespace cellcube::query
