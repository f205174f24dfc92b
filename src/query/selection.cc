// Selection (docs/QUERY.md): the groups a population selects, and the one rule that
// matches values for where clauses and DE sides.
#include <algorithm>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "query/engine_internal.h"
#include "util/text.h"

namespace cellcube {
namespace {

using query::GroupRange;
using query::LabelCodes;
using query::SelectScratch;
using query::WhereFilter;

// Flags the datasets named (all of them when none is).
Status MarkDatasets(const std::vector<std::string>& datasets, const LabelCodes& codes,
                    const std::vector<std::string>& names, std::vector<uint8_t>& selected) {
  selected.assign(names.size(), datasets.empty() ? 1 : 0);
  for (const auto& name : datasets) {
    auto it = codes.find(name);
    if (it == codes.end())
      return Status::NotFound("unknown dataset '" + name + "'" + SuggestionSuffix(name, names));
    selected[static_cast<size_t>(it->second)] = 1;
  }
  return Status::Ok();
}

// Sets flags[1 + code] for each of `values` of `column` (flags[0] for NA): the one
// matching rule of where clauses and DE sides (QueryEngine::MatchValues).
// In an ontology-backed column a value may also name a term by id or label, in any
// case: the labels of that term, or with `rollup` of its subtree (docs/ONTOLOGY.md).
Status MatchInto(const StoreData& m, int32_t column, const LabelCodes& codes,
                 const std::vector<std::string>& present, const query::Terms& terms, bool rollup,
                 const std::vector<std::string>& values, const std::string& context,
                 uint8_t* flags) {
  const std::string& name = m.columns[static_cast<size_t>(column)];
  if (values.empty()) return Status::InvalidArgument("no value given for column '" + name + "'");
  for (const auto& value : values) {
    auto it = codes.find(value);
    if (value == "NA") {  // missing values (and a value literally called NA, if any)
      flags[0] = 1;
      if (it != codes.end()) flags[1 + static_cast<size_t>(it->second)] = 1;
      continue;
    }
    const int32_t term = terms.Find(column, value);
    if (term >= 0) {
      terms.Flag(column, term, rollup, flags);
      continue;
    }
    if (it == codes.end())
      return Status::NotFound("column '" + name + "' has no value '" + value + "'" +
                              (context.empty() ? "" : " (" + context + ")") +
                              SuggestionSuffix(value, present));
    flags[1 + static_cast<size_t>(it->second)] = 1;
  }
  return Status::Ok();
}

// The where clauses as flags, one per (column, label), index 0 for NA; clauses on one
// column add up (any of their values). Clauses on the dataset column narrow
// `dataset_selected` instead, so `where dataset:D` and `datasets D` take one path.
Status AllowValues(const QueryEngine& engine, const std::vector<WhereClause>& where,
                   const std::vector<std::string>& rollup, const query::Terms& terms,
                   const std::vector<LabelCodes>& label_code,
                   const std::vector<std::vector<std::string>>& present_values,
                   std::vector<WhereFilter>& filters, std::vector<uint8_t>& allowed,
                   std::vector<uint8_t>& dataset_selected) {
  const StoreData& m = engine.store().meta();
  filters.clear();
  allowed.clear();
  for (const auto& clause : where) {
    CC_ASSIGN_OR_RETURN(int32_t c, engine.ColumnIndex(clause.column));
    const auto column = static_cast<size_t>(c);
    size_t offset = allowed.size();
    bool seen = false;
    for (const auto& f : filters)
      if (f.column == c) offset = f.offset, seen = true;
    if (!seen) {
      filters.push_back({c, offset});
      allowed.resize(offset + m.labels[column].size() + 1, 0);
    }
    const bool rolled = std::find(rollup.begin(), rollup.end(), clause.column) != rollup.end();
    CC_RETURN_IF_ERROR(MatchInto(m, c, label_code[column], present_values[column], terms, rolled,
                                 clause.values, "", allowed.data() + offset));
  }
  auto on_datasets = std::find_if(filters.begin(), filters.end(),
                                  [](const WhereFilter& f) { return f.column == 0; });
  if (on_datasets != filters.end()) {
    for (size_t d = 0; d < dataset_selected.size(); ++d)
      dataset_selected[d] &= allowed[on_datasets->offset + 1 + d];
    filters.erase(on_datasets);  // the runs of the selected datasets already hold it
  }
  return Status::Ok();
}

// Candidate group ranges: the selected datasets' (when groups are consecutive per
// dataset, as cellcube writes them), else every group.
void CandidateRuns(const StoreReader& s, const std::vector<uint8_t>& dataset_selected,
                   std::vector<GroupRange>& runs) {
  runs.clear();
  if (s.dataset_group_begin().empty()) {
    runs.push_back({0, s.n_groups(), -1});
    return;
  }
  for (size_t d = 0; d < dataset_selected.size(); ++d)
    if (dataset_selected[d] && s.dataset_group_end()[d] > s.dataset_group_begin()[d])
      runs.push_back(
          {s.dataset_group_begin()[d], s.dataset_group_end()[d], static_cast<int32_t>(d)});
  std::sort(runs.begin(), runs.end(),
            [](const GroupRange& a, const GroupRange& b) { return a.begin < b.begin; });
}

// The groups of the runs that the datasets and filters keep, ascending.
void CollectGroups(const StoreReader& s, const std::vector<WhereFilter>& filters,
                   const SelectScratch& w, std::vector<int32_t>& out) {
  const StoreData& m = s.meta();
  const std::vector<int32_t>& group_dataset = s.group_dataset();
  out.clear();
  for (const GroupRange& run : w.runs)
    for (int64_t g = run.begin; g < run.end; ++g) {
      if (!w.dataset_selected[static_cast<size_t>(group_dataset[static_cast<size_t>(g)])]) continue;
      bool keep = true;
      for (const auto& [c, offset] : filters)
        keep &=
            w.allowed[offset + static_cast<size_t>(
                                   m.codes[static_cast<size_t>(c)][static_cast<size_t>(g)] + 1)] !=
            0;
      if (keep) out.push_back(static_cast<int32_t>(g));
    }
  // Runs follow dataset order, which is group order in a store cellcube wrote.
  if (!std::is_sorted(out.begin(), out.end())) std::sort(out.begin(), out.end());
}

}  // namespace

// The groups that `population` selects, ascending: the one definition of a population,
// for queries, facet counts and both sides of a DE.
Status QueryEngine::SelectGroupsInto(const Population& population, Scratch& scratch,
                                     std::vector<int32_t>* selected) const {
  SelectScratch& w = scratch.select;
  std::vector<WhereFilter>& filters = w.filters;
  const StoreReader& s = *store_;
  CC_RETURN_IF_ERROR(MarkDatasets(population.datasets, impl_->label_code[0], s.meta().labels[0],
                                  w.dataset_selected));
  CC_RETURN_IF_ERROR(CheckRollup(population.rollup));
  CC_RETURN_IF_ERROR(AllowValues(*this, population.where, population.rollup, impl_->terms,
                                 impl_->label_code, impl_->present_values, filters, w.allowed,
                                 w.dataset_selected));
  CandidateRuns(s, w.dataset_selected, w.runs);
  CollectGroups(s, filters, w, *selected);
  return Status::Ok();
}

Result<std::vector<int32_t>> QueryEngine::SelectGroups(const Population& population) const {
  std::vector<int32_t> out;
  auto scratch = impl_->scratch.Take();
  CC_RETURN_IF_ERROR(SelectGroupsInto(population, *scratch, &out));
  return out;
}

Result<std::vector<uint8_t>> QueryEngine::MatchValues(int32_t column,
                                                      const std::vector<std::string>& values,
                                                      const std::string& context,
                                                      bool rollup) const {
  const auto c = static_cast<size_t>(column);
  std::vector<uint8_t> flags(store_->meta().labels[c].size() + 1, 0);
  CC_RETURN_IF_ERROR(MatchInto(store_->meta(), column, impl_->label_code[c],
                               impl_->present_values[c], impl_->terms, rollup, values, context,
                               flags.data()));
  return flags;
}

}  // namespace cellcube
