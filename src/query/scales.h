// What an answer says about the scale of the values it pools (docs/QUERY.md, "Values on
// different scales"):
//   - datasets aggregated with different transforms (ln CP10K beside values as stored);
//   - datasets whose values went below 0 (scaled data, z-scores): nnz counts only the
//     values above 0, so frac and mean_expr (sum / nnz) describe no cells there, and a
//     query row holding such cells for its gene gets an empty mean_expr;
//   - datasets aggregated before stores recorded negative values, which may be either.
// Internal to src/query. Thread safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "cellcube/store_data.h"

namespace cellcube::query {

class DatasetScales {
 public:
  explicit DatasetScales(const StoreData& meta);

  // Marks the rows of `result` (a query's answer, its datasets filled in) that hold
  // cells of a dataset with negative values for their gene, and adds the answer's notes.
  // `groups` are the selected groups, ascending; `split_of[i]` is the split of
  // `groups[i]`.
  void Annotate(const StoreReader& store, const std::vector<int32_t>& groups,
                const std::vector<int32_t>& split_of, QueryResult* result) const;

  // Whether every dataset has one transform and none has, or may have, values below 0:
  // then Annotate has nothing to say.
  bool uniform() const { return uniform_; }

  // The notes of a comparison (DE, markers) of the cells of `groups` (ascending).
  void NoteComparison(const StoreData& meta, const std::vector<int32_t>& groups,
                      std::vector<std::string>* notes) const;

 private:
  // Every dataset has one transform and none has, or may have, values below 0.
  bool uniform_ = true;
  std::vector<NegativeValues> negative_;  // per dataset
};

}  // namespace cellcube::query
