// The query engine (include/cellcube/query.h): pure computation over the arrays a
// StoreReader mapped. Per query: select groups (query/selection.cc), give each selected
// group its split, then roll up (query/rollup.cc): per gene, scan only that gene's
// entries of the selected datasets' groups, summing into per-split accumulators
// (query/scan.cc). Each call borrows its buffers from the engine's pool
// (engine_internal.h), so a query allocates little more than its result.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "cellcube/query.h"
#include "query/engine_internal.h"
#include "query/rolled_splits.h"
#include "util/text.h"

namespace cellcube {

QueryEngine::QueryEngine(std::shared_ptr<const StoreReader> store, const EngineOptions& options)
    : store_(std::move(store)) {
  auto impl = std::make_unique<Impl>();
  const StoreData& m = store_->meta();
  impl->parallel_min_entries = options.parallel_min_entries;
  impl->inverse_cells.reserve(m.n_cells.size());
  for (int64_t n : m.n_cells) impl->inverse_cells.push_back(1.0 / static_cast<double>(n));
  impl->genes = std::make_unique<const GeneNames>(store_->gene_ids(), store_->gene_symbols());
  impl->scales = std::make_unique<const query::DatasetScales>(m);
  impl->terms = query::Terms::Of(m);
  for (size_t c = 0; c < m.columns.size(); ++c) {
    auto& codes = impl->label_code.emplace_back();
    for (size_t l = 0; l < m.labels[c].size(); ++l)
      codes.emplace(m.labels[c][l], static_cast<int32_t>(l));
    std::vector<bool> used(m.labels[c].size() + 1, false);
    for (int32_t code : m.codes[c]) used[static_cast<size_t>(code + 1)] = true;
    auto& present = impl->present_values.emplace_back();
    for (size_t l = 0; l < m.labels[c].size(); ++l)
      if (used[l + 1]) present.push_back(m.labels[c][l]);
    if (used[0]) present.push_back("NA");
  }
  impl_ = std::move(impl);
}

QueryEngine::~QueryEngine() = default;

std::shared_ptr<const QueryEngine> QueryEngine::Create(std::shared_ptr<const StoreReader> store,
                                                       const EngineOptions& options) {
  return std::shared_ptr<QueryEngine>(new QueryEngine(std::move(store), options));
}

const std::vector<std::string>& QueryEngine::ColumnValues(int32_t column) const {
  return impl_->present_values[static_cast<size_t>(column)];
}

Result<std::shared_ptr<const QueryEngine>> QueryEngine::Open(const std::string& path,
                                                             const StoreOpenOptions& options) {
  CC_ASSIGN_OR_RETURN(auto store, StoreReader::Open(path, options));
  return Create(std::move(store));
}

// The error for a name that is no gene id or symbol, suggesting near ones (built only
// here: the error path may take milliseconds, the open should not).
Status QueryEngine::UnknownGene(const std::string& name) const {
  const StringList& ids = store_->gene_ids();
  const StringList& symbols = store_->gene_symbols();
  std::vector<std::string> candidates = ids.ToVector();
  std::vector<int32_t> first;
  for (size_t g = 0; g < symbols.size(); ++g) {
    if (symbols[g].empty()) continue;
    first.clear();
    impl_->genes->symbols.Find(symbols[g], &first);
    if (!first.empty() && first.front() == static_cast<int32_t>(g))
      candidates.emplace_back(symbols[g]);
  }
  const std::string hint = DidYouMean(NearNames(name, candidates));
  return Status::NotFound("unknown gene '" + name + "': no gene id or symbol matches" +
                          (hint.empty() ? std::string(" (nothing close either)") : hint));
}

Result<std::vector<int32_t>> QueryEngine::ResolveGenes(
    const std::vector<std::string>& names) const {
  std::vector<int32_t> out;
  std::vector<int32_t> found;
  for (const auto& name : names) {
    found.clear();
    if (!impl_->genes->ids.Find(name, &found) && !impl_->genes->symbols.Find(name, &found))
      return UnknownGene(name);
    for (int32_t g : found)
      if (std::find(out.begin(), out.end(), g) == out.end()) out.push_back(g);
  }
  return out;
}

Result<int32_t> QueryEngine::ColumnIndex(const std::string& name) const {
  const auto& cols = store_->meta().columns;
  for (size_t c = 0; c < cols.size(); ++c)
    if (cols[c] == name) return static_cast<int32_t>(c);
  return Status::NotFound("unknown column '" + name + "'" + SuggestionSuffix(name, cols));
}

namespace {

using query::RunScratch;

constexpr uint64_t kDenseKeys = uint64_t{1} << 16;

// Replaces each key by its rank among the distinct keys; returns how many there are.
uint64_t RankKeys(std::vector<uint64_t>& keys, std::vector<uint64_t>& distinct) {
  distinct.assign(keys.begin(), keys.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  for (auto& k : keys)
    k = static_cast<uint64_t>(std::lower_bound(distinct.begin(), distinct.end(), k) -
                              distinct.begin());
  return distinct.size();
}

// The split columns of a query, as column indices; no column twice, none named like an
// output column.
Result<std::vector<int32_t>> SplitColumns(const QueryEngine& engine, const Query& q,
                                          const std::vector<Metric>& metrics) {
  std::vector<int32_t> by;
  for (const auto& name : q.by) {
    CC_ASSIGN_OR_RETURN(int32_t c, engine.ColumnIndex(name));
    if (std::find(by.begin(), by.end(), c) != by.end())
      return Status::InvalidArgument("column '" + name + "' is split by twice");
    bool clash = name == "gene";
    for (Metric metric : metrics) clash |= name == MetricName(metric);
    if (clash)
      return Status::InvalidArgument("cannot split by column '" + name +
                                     "': the output has a column of that name already");
    by.push_back(c);
  }
  return by;
}

// Numbers the selected groups' splits in key order (mixed radix over the by-columns'
// label positions, NA last): t.split per selected group, t.representative per split (a
// group holding its labels). Returns how many splits there are.
uint64_t NumberSplits(const StoreData& m, const std::vector<int32_t>& by, RunScratch& t) {
  const size_t n_selected = t.selected.size();
  t.keys.assign(n_selected, 0);
  uint64_t key_space = 1;
  for (int32_t c : by) {
    const auto& codes = m.codes[static_cast<size_t>(c)];
    const uint64_t radix = m.labels[static_cast<size_t>(c)].size() + 1;
    if (key_space > std::numeric_limits<uint64_t>::max() / radix)
      key_space = RankKeys(t.keys, t.distinct);
    for (size_t i = 0; i < n_selected; ++i) {
      const int32_t code = codes[static_cast<size_t>(t.selected[i])];
      t.keys[i] = t.keys[i] * radix + (code < 0 ? radix - 1 : static_cast<uint64_t>(code));
    }
    key_space *= radix;
  }
  // Keys -> dense split numbers in key order.
  uint64_t n_splits = 0;
  if (key_space <= kDenseKeys) {
    if (t.dense.size() < key_space) t.dense.assign(kDenseKeys, 0);
    t.distinct.clear();
    for (uint64_t k : t.keys)
      if (!t.dense[k]) {
        t.dense[k] = 1;
        t.distinct.push_back(k);
      }
    std::sort(t.distinct.begin(), t.distinct.end());
    for (size_t i = 0; i < t.distinct.size(); ++i)
      t.dense[t.distinct[i]] = static_cast<int32_t>(i + 1);
    for (auto& k : t.keys) k = static_cast<uint64_t>(t.dense[k] - 1);
    for (uint64_t k : t.distinct) t.dense[k] = 0;  // leave the table clean
    n_splits = t.distinct.size();
  } else {
    n_splits = RankKeys(t.keys, t.distinct);
  }
  t.representative.assign(n_splits, -1);
  t.split.assign(n_selected, 0);
  for (size_t i = 0; i < n_selected; ++i) {
    t.split[i] = static_cast<int32_t>(t.keys[i]);
    if (t.representative[t.keys[i]] < 0) t.representative[t.keys[i]] = t.selected[i];
  }
  return n_splits;
}

// The genes answered, in order, with their ids and symbols.
void FillGenes(const StoreReader& s, const std::vector<int32_t>& genes, QueryResult* result) {
  result->gene_indices = genes;
  for (int32_t g : genes) {
    result->genes.emplace_back(s.gene_ids()[static_cast<size_t>(g)]);
    result->symbols.emplace_back(s.gene_symbols()[static_cast<size_t>(g)]);
  }
}

// The rows of the (split, gene)s with cells, split-major, from statistics per split x
// gene (and their histograms, when `bins` is given).
void FillRows(const std::vector<Aggregate>& agg, const std::vector<Bins>* bins, size_t n_splits,
              size_t n_genes, QueryResult* result) {
  result->rows.reserve(n_splits * n_genes);
  for (size_t sp = 0; sp < n_splits; ++sp)
    for (size_t gi = 0; gi < n_genes; ++gi) {
      const Aggregate& a = agg[sp * n_genes + gi];
      if (a.n_cells <= 0) continue;
      result->rows.push_back({static_cast<int32_t>(sp), static_cast<int32_t>(gi), a});
      if (bins) result->bins.push_back((*bins)[sp * n_genes + gi]);
    }
}

// The answer from the roll-up t.agg (split-major): genes, split labels, and the rows of
// (split, gene)s with cells.
void FillResult(const StoreReader& s, const query::Terms& terms, const std::vector<int32_t>& genes,
                const std::vector<int32_t>& by, uint64_t n_splits, const RunScratch& t,
                QueryResult* result) {
  const StoreData& m = s.meta();
  FillGenes(s, genes, result);
  result->n_splits = static_cast<int64_t>(n_splits);
  result->split_labels.reserve(n_splits * by.size());
  static const std::string kNA = "NA";
  for (size_t sp = 0; sp < n_splits; ++sp) {
    const auto g = static_cast<size_t>(t.representative[sp]);
    for (int32_t c : by) {
      const int32_t code = m.codes[static_cast<size_t>(c)][g];
      result->split_labels.push_back(
          code < 0 ? kNA : m.labels[static_cast<size_t>(c)][static_cast<size_t>(code)]);
      if (terms) result->split_terms.push_back(terms.IdOf(m, c, code));
    }
  }
  FillRows(t.agg, t.bins.empty() ? nullptr : &t.bins, n_splits, genes.size(), result);
}

// A rolled-up answer (docs/ONTOLOGY.md "Roll-up"): the base splits' roll-up in t.agg
// combined into the output splits, which replace the plain ones in the result.
void FillRolled(const StoreReader& s, const std::vector<int32_t>& genes, bool m2, RunScratch& t,
                QueryResult* result) {
  const query::RolledSplits& r = t.rolled;
  const bool bins = !t.bins.empty();
  CombineSplits(r, genes.size(), t.agg, bins ? &t.bins : nullptr, m2, &t.rolled_agg,
                bins ? &t.rolled_bins : nullptr);
  FillGenes(s, genes, result);
  result->n_splits = r.n_out;
  result->split_labels = r.labels;
  result->split_terms = r.term_ids;
  result->split_depth = r.depth;
  FillRows(t.rolled_agg, bins ? &t.rolled_bins : nullptr, static_cast<size_t>(r.n_out),
           genes.size(), result);
}

// The roll-up's plan for this selection and these splits, made or reused (RunScratch).
void PlanRolled(const StoreData& meta, const query::Terms& terms, const std::vector<int32_t>& by,
                const std::vector<uint8_t>& rolled, bool pairs, RunScratch& t) {
  if (t.rolled_valid && t.rolled_selected == t.selected && t.rolled_by == by &&
      t.rolled_flags == rolled)
    return;
  t.rolled = query::PlanRolledSplits(meta, terms, by, rolled, t.selected, t.split, t.representative,
                                     pairs);
  t.rolled_selected = t.selected;
  t.rolled_by = by;
  t.rolled_flags = rolled;
  t.rolled_valid = true;
}

}  // namespace

// Resolve the genes and split columns, select the groups, number their splits, roll
// up, and lay out the answer.
Result<QueryResult> QueryEngine::Run(const Query& q) const {
  QueryResult result;
  CC_ASSIGN_OR_RETURN(result.metrics, ParseMetrics(q.metrics));
  if (q.genes.empty()) return Status::InvalidArgument("no genes asked for");
  CC_ASSIGN_OR_RETURN(std::vector<int32_t> genes, ResolveGenes(q.genes));
  CC_ASSIGN_OR_RETURN(std::vector<int32_t> by, SplitColumns(*this, q, result.metrics));
  result.by = q.by;
  const auto& rollup = q.population.rollup;
  for (size_t k = 0; k < by.size(); ++k) {
    result.by_backed.push_back(IsBacked(by[k]));
    result.by_rolled.push_back(std::find(rollup.begin(), rollup.end(), q.by[k]) != rollup.end());
  }
  result.hist_max = store_->meta().hist_max;

  auto scratch = impl_->scratch.Take();
  RunScratch& t = scratch->run;
  CC_RETURN_IF_ERROR(SelectGroupsInto(q.population, *scratch, &t.selected));
  if (t.selected.empty()) {
    result.notes.push_back(kNoCellsSelected);
    return result;
  }
  const uint64_t n_splits = NumberSplits(store_->meta(), by, t);
  RollUpWants wants;
  wants.bins = q.distribution;
  for (Metric metric : result.metrics) {
    wants.m2 |= metric == Metric::kVar || metric == Metric::kStd;
    wants.bins |= MetricNeedsHistograms(metric);
  }
  if (!wants.bins) t.bins.clear();  // none from an earlier call
  CC_RETURN_IF_ERROR(RollUpInto(*scratch, genes, t.selected, t.split,
                                static_cast<int32_t>(n_splits), wants, &t.agg,
                                wants.bins ? &t.bins : nullptr, nullptr));
  // The roll-up's plan already lists the datasets with a selected group.
  result.datasets = scratch->rollup.contributing;
  std::sort(result.datasets.begin(), result.datasets.end());
  if (result.n_rolled() == 0) {
    FillResult(*store_, impl_->terms, genes, by, n_splits, t, &result);
  } else {
    PlanRolled(store_->meta(), impl_->terms, by, result.by_rolled, !impl_->scales->uniform(), t);
    FillRolled(*store_, genes, wants.m2, t, &result);
    if (!result.rows.empty())
      impl_->scales->Annotate(*store_, t.rolled.groups, t.rolled.splits, &result);
  }
  // Selected groups have cells, so a split is empty only where no dataset measured the gene.
  if (result.rows.empty())
    result.notes.push_back(kNotMeasured);
  else if (result.n_rolled() == 0)
    impl_->scales->Annotate(*store_, t.selected, t.split, &result);
  return result;
}

}  // namespace cellcube
