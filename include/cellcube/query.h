// The query engine: answers "for these genes, over the cell groups these filters
// select, split by these columns: n_cells, nnz, frac, sum, mean, mean_expr, var, std"
// from a store (docs/QUERY.md), by summing the additive statistics of the selected groups
// per (split, gene) in float64 and deriving the metrics from the sums.
//
// Semantics (docs/QUERY.md, docs/BUILD.md; docs/QUERY.md):
//   - genes: store gene ids or symbols, case-insensitively. A name equal to some gene
//     id (ignoring case) means those ids; otherwise every gene whose symbol matches.
//     A gene named twice (or by id and by symbol) is answered once, at its first place.
//     An unknown name is a NotFound error suggesting near names.
//   - population.datasets: empty = all; else only these (exact names).
//   - population.where: per column, the groups whose value is one of the listed values
//     (OR); different columns AND-ed. Values match the labels literally (they may contain
//     ',' or '='); "NA" matches a missing value. A column a dataset lacks is NA there.
//   - by: 0 or more columns to split by (`dataset` and `cell_type` are columns like
//     the others). Splits come in the order of the columns' label order (the store's
//     category order), NA last, the first by-column varying slowest; within a split,
//     genes in the order asked.
//   - n_cells counts the cells of the selected groups whose dataset measured the gene;
//     a (split, gene) with n_cells = 0 gives no row.
//
// Thread safety: a QueryEngine is immutable after creation but for a pool of scratch
// buffers; Run and the other calls may be made from any number of threads at once, and
// from inside a RollUpEach visitor (each call borrows buffers of its own). A large query
// (EngineOptions) also runs its genes on the process's thread pool (util/parallel.h).
// Ownership: the engine holds a shared_ptr to its StoreReader; a QueryResult owns
// copies of every string it holds, so it outlives the engine.
// Errors: one line, NotFound for an unknown gene/column/value/dataset (with
// suggestions), InvalidArgument for a malformed query (unknown metric, no genes, a
// column split by twice).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_reader.h"

namespace cellcube {

enum class Metric : uint8_t {
  kNCells,
  kNnz,
  kFrac,
  kSum,
  kMean,
  kMeanExpr,
  kVar,
  kStd,
  // From the rows' histograms (docs/QUERY.md, "Distribution metrics"): quantiles over all
  // cells, the median over expressing cells, the upper edge of the highest non-empty bin.
  kMedian,
  kQ05,
  kQ25,
  kQ75,
  kQ95,
  kMedianExpr,
  kMax,
};

const char* MetricName(Metric m);
// Whether a metric is computed from histograms (a store of format 3 built with them).
inline bool MetricNeedsHistograms(Metric m) { return m >= Metric::kMedian; }
// Every metric, in docs/QUERY.md's order.
const std::vector<Metric>& AllMetrics();
// n_cells, frac, mean.
const std::vector<Metric>& DefaultMetrics();
// n_cells and nnz are integers; the others float64.
inline bool MetricIsInteger(Metric m) { return m == Metric::kNCells || m == Metric::kNnz; }
// Parses metric names (exact, lower case); empty = DefaultMetrics(). An unknown or
// repeated name is an InvalidArgument error.
Result<std::vector<Metric>> ParseMetrics(const std::vector<std::string>& names);

// The pooled statistics of one (split, gene). m2 = Σ(v − sum/n_cells)² over the pooled
// cells, combined from the groups' m2 by Chan et al.'s formula (exact two-pass form, no
// cancellation); it is filled only when var or std was asked for, else 0.
struct Aggregate {
  int64_t n_cells = 0;
  int64_t nnz = 0;
  double sum = 0;
  double m2 = 0;
};

// A row's histogram: cells per bin (docs/QUERY.md); its cells with values above 0.
using Bins = std::array<uint64_t, 64>;
// A metric of an aggregate per docs/QUERY.md; NaN when missing (mean_expr with nnz = 0,
// var/std with n_cells < 2, anything with n_cells = 0). var = m2 / (n_cells − 1).
// Distribution metrics need `bins` (and the layout's upper edge `hist_max`): NaN without.
double MetricValue(Metric m, const Aggregate& a, const Bins* bins = nullptr, double hist_max = 0);

struct WhereClause {
  std::string column;
  std::vector<std::string> values;  // OR-ed
};

// The cells a question is about: the one definition of a selection, for queries, facet
// counts and DE/markers alike (docs/QUERY.md). `datasets` (empty = every dataset) and
// `where` are AND-ed; clauses on one column are merged (OR). `datasets = {D}` and a
// where clause `dataset: D` select the same cells by the same path.
struct Population {
  std::vector<std::string> datasets;
  std::vector<WhereClause> where;
  // Ontology-backed columns rolled up (docs/ONTOLOGY.md "Roll-up"): a term named in
  // `where` (or a DE side) stands for its subtree, and a split by the column gives one row
  // per shown term. A column no ontology backs is an InvalidArgument error.
  std::vector<std::string> rollup;
};

struct Query {
  std::vector<std::string> genes;
  std::vector<std::string> by;
  Population population;
  std::vector<std::string> metrics;  // empty = DefaultMetrics()
  // Keep each row's histogram (QueryResult::bins): a distribution answer.
  bool distribution = false;
};

struct QueryResult {
  std::vector<std::string> by;        // the split columns, as asked
  std::vector<Metric> metrics;        // as asked (or the default)
  std::vector<std::string> genes;     // store gene ids of the genes answered, in order
  std::vector<std::string> symbols;   // their symbols ("" when unknown)
  std::vector<int32_t> gene_indices;  // their indices in the store's genes (var rows)
  int64_t n_splits = 0;
  std::vector<std::string> split_labels;  // n_splits x by.size(), row-major; "NA" = missing
  // Beside split_labels: the term id of each ontology-backed value ("" for plain values,
  // NA, and columns no ontology backs); and which by-columns are backed, and rolled up.
  std::vector<std::string> split_terms;
  std::vector<uint8_t> by_backed, by_rolled;  // per by-column
  // Per split, per rolled-up by-column (in by order): its depth (docs/ONTOLOGY.md).
  std::vector<int32_t> split_depth;
  int32_t n_rolled() const {
    int32_t n = 0;
    for (uint8_t r : by_rolled) n += r;
    return n;
  }
  // The name of rolled-up by-column c's depth column: "depth", or "COL_depth" when
  // several by-columns are rolled up (rolled-up columns not split by do not count).
  std::string DepthColumn(size_t by_column) const {
    return n_rolled() > 1 ? by[by_column] + "_depth" : std::string("depth");
  }

  struct Row {
    int32_t split = 0;  // into split_labels
    int32_t gene = 0;   // into genes
    Aggregate stats;
    // The row holds cells of a dataset whose values go below 0 (scaled data) and that
    // measured the gene: only values above 0 count in nnz there, so sum / nnz is no mean
    // of any cells, mean_expr is missing, and so is its distribution (those cells are in
    // no histogram) (docs/QUERY.md, "Values on different scales").
    bool holds_negative = false;
  };
  std::vector<Row> rows;  // split-major; rows with n_cells = 0 are left out
  // Per row, its histogram, when a distribution metric or a distribution was asked for
  // (else empty); the layout's upper edge (bin i covers (i·H/64, (i+1)·H/64]).
  std::vector<Bins> bins;
  double hist_max = 0;
  // Metric m of row i, as every surface shows it: MetricValue, with mean_expr and the
  // distribution metrics missing (NaN) where the row holds negative values.
  double Value(size_t i, Metric m) const {
    const Row& row = rows[i];
    if (row.holds_negative && (m == Metric::kMeanExpr || MetricNeedsHistograms(m)))
      return std::numeric_limits<double>::quiet_NaN();
    return MetricValue(m, row.stats, bins.empty() ? nullptr : &bins[i], hist_max);
  }
  // Whether row i has a distribution to show (zeros and bins): not where it holds
  // negative values.
  bool HasDistribution(size_t i) const { return !bins.empty() && !rows[i].holds_negative; }
  // The datasets holding the selected cells, ascending (whether or not they measured
  // the genes).
  std::vector<int32_t> datasets;
  // Why there are no rows, when there are none (kNoCellsSelected or kNotMeasured), and
  // what the answer pools: datasets on different scales (docs/QUERY.md).
  std::vector<std::string> notes;

  const std::string& Label(const Row& row, size_t by_column) const {
    return split_labels[static_cast<size_t>(row.split) * by.size() + by_column];
  }
  // Rolled-up by-column c's depth in split sp (0 when c is not rolled up).
  int32_t Depth(int64_t sp, size_t by_column) const {
    if (!by_rolled[by_column]) return 0;
    size_t k = 0;
    for (size_t c = 0; c < by_column; ++c) k += by_rolled[c];
    return split_depth[static_cast<size_t>(sp) * static_cast<size_t>(n_rolled()) + k];
  }
  // The output columns: the by-columns (each rolled-up one followed by its depth
  // column), "gene", then the metrics.
  std::vector<std::string> ColumnNames() const;
};

// QueryResult::notes of an empty answer: the selection holds no cells at all, or it
// does, but none of its datasets measured the genes asked.
inline constexpr const char* kNoCellsSelected =
    "no rows: the selection holds no cells (no cell group matches the datasets and where "
    "filters)";
inline constexpr const char* kNotMeasured =
    "no rows: none of the selected datasets measured these genes";

struct EngineOptions {
  // A query whose genes hold at least this many entries runs on the thread pool too (a
  // run of genes per participant); smaller ones on the calling thread only. <= 0: never
  // in parallel.
  int64_t parallel_min_entries = int64_t{1} << 18;
};

class QueryEngine {
 public:
  // Opens the store (StoreReader::Open) and indexes its names.
  static Result<std::shared_ptr<const QueryEngine>> Open(const std::string& path,
                                                         const StoreOpenOptions& options = {});
  static std::shared_ptr<const QueryEngine> Create(std::shared_ptr<const StoreReader> store,
                                                   const EngineOptions& options = {});

  const StoreReader& store() const { return *store_; }
  const std::shared_ptr<const StoreReader>& store_ptr() const { return store_; }

  Result<QueryResult> Run(const Query& query) const;

  // The groups a population selects, ascending. NotFound/InvalidArgument for unknown
  // names or empty value lists, as Run.
  Result<std::vector<int32_t>> SelectGroups(const Population& population) const;
  // Per (column label + 1), whether `values` of `column` match it, index 0 standing for
  // NA: the one matcher of where clauses and DE sides. "NA" matches missing values and a
  // value literally named NA; any other value must be one of the column's labels, else
  // NotFound naming `context` (e.g. "--group1") when given, with suggestions.
  // A value of an ontology-backed column may also be a term's id or label, any case
  // (docs/ONTOLOGY.md): the values labelled with that term, or with `rollup`, with a term
  // of its subtree (none, for a term without cells, is no error).
  Result<std::vector<uint8_t>> MatchValues(int32_t column, const std::vector<std::string>& values,
                                           const std::string& context = "",
                                           bool rollup = false) const;
  // Per (column label + 1): whether the label's term is a strict ancestor of the term of
  // one of `values` (which MatchValues accepted): the cells DE's `rest` leaves out under a
  // roll-up (docs/ONTOLOGY.md "DE and markers").
  std::vector<uint8_t> AncestorValues(int32_t column, const std::vector<std::string>& values) const;
  // Whether a column is ontology-backed; an InvalidArgument error for each of `columns`
  // that is not (or NotFound for an unknown one), naming how to back it.
  bool IsBacked(int32_t column) const;
  Status CheckRollup(const std::vector<std::string>& columns) const;
  // The shown terms of a roll-up of `column` over `groups` (docs/ONTOLOGY.md "Roll-up"):
  // each with its label, id and depth, in pre-order; then the plain values present.
  struct RolledValue {
    std::string label, term_id;  // term_id "" for a plain value
    int32_t depth = 0;
  };
  std::vector<RolledValue> RolledValues(int32_t column, const std::vector<int32_t>& groups) const;
  // A backed column's term id for its label `code` ("" for a plain value or none).
  const std::string& TermId(int32_t column, int32_t code) const;
  // The id of the term of a backed column's ontology whose label is exactly `label`
  // ("" when none, or the column is not backed).
  std::string TermIdOf(int32_t column, const std::string& label) const;
  // Per (split, gene), split-major: the statistics of `groups` (ascending) pooled by
  // `split_of_group` (one split in [0, n_splits) per group); n_cells counts the cells
  // of datasets that measured the gene; m2 is filled when `want_m2`. Each gene's
  // entries are checked first (Corrupt for a damaged one).
  struct RollUpWants {
    bool m2 = false;    // Aggregate::m2
    bool bins = false;  // each split's histogram (the store must have histograms)
  };
  Result<std::vector<Aggregate>> RollUp(const std::vector<int32_t>& genes,
                                        const std::vector<int32_t>& groups,
                                        const std::vector<int32_t>& split_of_group,
                                        int32_t n_splits, bool want_m2) const;
  // One gene's roll-up as a visitor sees it: `at[sp]` for every split in [0, n_splits),
  // and the splits that can hold cells for this gene (those with cells of a dataset that
  // measured it), `active[0, n_active)`, each once, in an order fixed by the groups and
  // splits (not necessarily ascending). Every split not listed is all zeros.
  struct GeneSplits {
    const Aggregate* at = nullptr;
    const Bins* bins = nullptr;  // per split, when asked for (RollUpWants::bins)
    const int32_t* active = nullptr;
    size_t n_active = 0;
  };
  // The same, handing each gene's splits to `visit(index in genes, splits)` instead of
  // keeping a (splits x genes) matrix. A large roll-up calls it from several threads at
  // once, each gene once: the visitor must be safe for that. With many splits, each
  // gene costs the visitor only its active splits (e.g. the donors of the datasets that
  // measured it, not every donor of the selection).
  using RollUpVisitor = std::function<void(size_t, const GeneSplits&)>;
  Status RollUpEach(const std::vector<int32_t>& genes, const std::vector<int32_t>& groups,
                    const std::vector<int32_t>& split_of_group, int32_t n_splits, RollUpWants wants,
                    const RollUpVisitor& visit) const;
  // The error for a distribution asked of a store without histograms (how to rebuild).
  Status NoHistograms() const;

  // Gene indices for names (ids or symbols, case-insensitive), deduplicated, in order.
  Result<std::vector<int32_t>> ResolveGenes(const std::vector<std::string>& names) const;
  // Index of a grouping column; NotFound with suggestions.
  Result<int32_t> ColumnIndex(const std::string& name) const;
  // The values a column takes in at least one group, in label order, then "NA" if some
  // group lacks a value.
  const std::vector<std::string>& ColumnValues(int32_t column) const;

  ~QueryEngine();

 private:
  struct Impl;     // the name indexes and per-group constants (src/query/engine_internal.h)
  struct Scratch;  // one call's buffers, from Impl's pool (src/query/engine_internal.h)
  QueryEngine(std::shared_ptr<const StoreReader> store, const EngineOptions& options);
  Status UnknownGene(const std::string& name) const;
  Status SelectGroupsInto(const Population& population, Scratch& scratch,
                          std::vector<int32_t>* selected) const;
  Status RollUpInto(Scratch& scratch, const std::vector<int32_t>& genes,
                    const std::vector<int32_t>& groups, const std::vector<int32_t>& split_of_group,
                    int32_t n_splits, RollUpWants wants, std::vector<Aggregate>* out,
                    std::vector<Bins>* bins_out, const RollUpVisitor* visit) const;

  std::shared_ptr<const StoreReader> store_;
  std::unique_ptr<const Impl> impl_;
};

}  // namespace cellcube
