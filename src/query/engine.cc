// The query engine (include/cellcube/query.h): pure computation over the arrays a
// StoreReader mapped. Per query: select groups (datasets, where), give each selected
// group its split, then per gene scan only that gene's entries of the selected
// datasets' groups, summing into per-split accumulators. Scratch buffers are kept per
// thread, so a query allocates only its result.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "cellcube/query.h"

#include "query/gene_names.h"
#include "query/scales.h"
#include "util/parallel.h"
#include "util/text.h"

namespace cellcube {

const char* MetricName(Metric m) {
  switch (m) {
    case Metric::kNCells:
      return "n_cells";
    case Metric::kNnz:
      return "nnz";
    case Metric::kFrac:
      return "frac";
    case Metric::kSum:
      return "sum";
    case Metric::kMean:
      return "mean";
    case Metric::kMeanExpr:
      return "mean_expr";
    case Metric::kVar:
      return "var";
    case Metric::kStd:
      return "std";
  }
  return "?";
}

const std::vector<Metric>& AllMetrics() {
  static const std::vector<Metric> kAll = {Metric::kNCells, Metric::kNnz,  Metric::kFrac,
                                           Metric::kSum,    Metric::kMean, Metric::kMeanExpr,
                                           Metric::kVar,    Metric::kStd};
  return kAll;
}

const std::vector<Metric>& DefaultMetrics() {
  static const std::vector<Metric> kDefault = {Metric::kNCells, Metric::kFrac, Metric::kMean};
  return kDefault;
}

Result<std::vector<Metric>> ParseMetrics(const std::vector<std::string>& names) {
  if (names.empty()) return DefaultMetrics();
  std::vector<std::string> known;
  for (Metric m : AllMetrics()) known.push_back(MetricName(m));
  std::vector<Metric> out;
  for (const auto& name : names) {
    auto it = std::find(known.begin(), known.end(), name);
    if (it == known.end())
      return Status::InvalidArgument("unknown metric '" + name + "'" +
                                     SuggestionSuffix(name, known));
    Metric m = AllMetrics()[static_cast<size_t>(it - known.begin())];
    if (std::find(out.begin(), out.end(), m) != out.end())
      return Status::InvalidArgument("metric '" + name + "' asked for twice");
    out.push_back(m);
  }
  return out;
}

double MetricValue(Metric m, const Aggregate& a) {
  constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
  if (a.n_cells <= 0) return kMissing;
  const auto n = static_cast<double>(a.n_cells);
  switch (m) {
    case Metric::kNCells:
      return n;
    case Metric::kNnz:
      return static_cast<double>(a.nnz);
    case Metric::kFrac:
      return static_cast<double>(a.nnz) / n;
    case Metric::kSum:
      return a.sum;
    case Metric::kMean:
      return a.sum / n;
    case Metric::kMeanExpr:
      return a.nnz > 0 ? a.sum / static_cast<double>(a.nnz) : kMissing;
    case Metric::kVar:
    case Metric::kStd: {
      if (a.n_cells < 2) return kMissing;
      const double var = a.m2 / (n - 1);
      return m == Metric::kVar ? var : std::sqrt(var);
    }
  }
  return kMissing;
}

std::vector<std::string> QueryResult::ColumnNames() const {
  std::vector<std::string> out = by;
  out.push_back("gene");
  for (Metric m : metrics) out.push_back(MetricName(m));
  return out;
}

// ---------------------------------------------------------------------------

struct QueryEngine::Impl {
  std::unique_ptr<const GeneNames> genes;                            // ids and symbols
  std::vector<std::unordered_map<std::string, int32_t>> label_code;  // per column
  std::vector<std::vector<std::string>> present_values;              // per column
  std::vector<double> inverse_cells;                                 // per group: 1 / n_cells
  int64_t parallel_min_entries = 0;
  std::unique_ptr<const query::DatasetScales> scales;  // what answers note about scales
};

QueryEngine::QueryEngine(std::shared_ptr<const StoreReader> store, const EngineOptions& options)
    : store_(std::move(store)) {
  auto impl = std::make_unique<Impl>();
  const StoreData& m = store_->meta();
  impl->parallel_min_entries = options.parallel_min_entries;
  impl->inverse_cells.reserve(m.n_cells.size());
  for (int64_t n : m.n_cells) impl->inverse_cells.push_back(1.0 / static_cast<double>(n));
  impl->genes = std::make_unique<const GeneNames>(store_->gene_ids(), store_->gene_symbols());
  impl->scales = std::make_unique<const query::DatasetScales>(m);
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

// ---------------------------------------------------------------------------

namespace {

struct Acc {
  double sum;
  uint64_t nnz;
};

// Per split, for the second moment: Σ over its entries of m2 + n·(mean_entry − mean)²,
// and the cells of the groups with an entry.
struct SecondAcc {
  double m2;
  double cells;
};

// A range of groups whose entries are scanned; in a roll-up, the selected ones all
// belong to `dataset` (-1: not known).
struct GroupRange {
  int64_t begin;
  int64_t end;
  int32_t dataset;
};

// One thread's accumulators.
struct ScanBuffers {
  std::vector<Acc> acc;
  std::vector<SecondAcc> second;
  std::vector<double> mean;
  std::vector<Aggregate> gene;
  std::vector<int32_t> active;  // this gene's splits (sparse roll-ups)
  std::vector<uint32_t> stamp;  // per split: 1 + the gene it was last activated for
};

struct SelectScratch {
  std::vector<uint8_t> dataset_selected;  // per dataset
  std::vector<uint8_t> allowed;           // per where column: 1 + labels flags (0 = NA)
  std::vector<GroupRange> runs;
};

struct RollUpScratch {
  std::vector<int32_t> split_of;  // per group in [base, base + size)
  std::vector<GroupRange> runs;
  ScanBuffers buffers;                         // this thread's accumulators
  std::vector<int64_t> cells;                  // per split
  std::vector<int32_t> contributing;           // datasets with a selected group
  std::vector<int32_t> contributing_index;     // per dataset: into contributing, or -1
  std::vector<int64_t> pairs_begin;            // per contributing dataset, into:
  std::vector<int32_t> pair_split;             // the splits with cells of that dataset
  std::vector<int64_t> pair_cells;             // and how many
  std::vector<int32_t> last_pair;              // per split, while the pairs are made
  std::vector<int32_t> all_splits;             // 0, 1, ..., n_splits - 1
  std::vector<size_t> by_dataset;              // selected groups by contributing dataset
  std::vector<int32_t> selected_contributing;  // per selected group: its dataset's index
  std::vector<int64_t> selected_cells;         // per selected group: its cells
  bool sparse = false;                         // PlanPairs' verdict

  // What the plan above was made for: PlanRuns and PlanPairs depend on nothing else, so
  // the next roll-up of the same selection (a page adding genes, a DE's two passes)
  // reuses it. A weak pointer, so the scratch never keeps a replaced store alive.
  std::weak_ptr<const StoreReader> planned_store;
  std::vector<int32_t> planned_groups, planned_splits;
  int32_t planned_n_splits = -1;

  bool PlannedFor(const std::shared_ptr<const StoreReader>& store,
                  const std::vector<int32_t>& groups, const std::vector<int32_t>& splits,
                  int32_t n_splits) const {
    return planned_n_splits == n_splits && planned_store.lock() == store &&
           planned_groups == groups && planned_splits == splits;
  }
};

struct Scratch {
  std::vector<int32_t> selected;  // groups
  std::vector<uint64_t> keys;     // per selected group
  std::vector<int32_t> split;     // per selected group
  std::vector<uint64_t> distinct;
  std::vector<int32_t> dense;           // key -> split + 1 (0 = unseen)
  std::vector<Aggregate> agg;           // per split x gene
  std::vector<int32_t> representative;  // per split: one of its groups
};

constexpr uint64_t kDenseKeys = uint64_t{1} << 16;

// The first k in [from, end) with idx[k] >= target (ascending idx): galloping from
// `from`, so that the many short hops between the runs of a selection (one cell type in
// each of 300 datasets) cost the log of the hop, not of the gene's entries.
template <typename Index>
int64_t Gallop(const Index* idx, int64_t from, int64_t end, Index target) {
  int64_t lo = from, step = 1;
  while (lo + step < end && idx[lo + step] < target) {
    lo += step;
    step <<= 1;
  }
  const int64_t hi = std::min(end, lo + step + 1);
  return std::lower_bound(idx + lo, idx + hi, target) - idx;
}

// The entries of `gene` in the runs of groups: [lo, hi) per run, found by galloping
// search on the ascending groups; entries of groups outside the selection
// (split_of < 0) may lie within. The runs of datasets that did not measure the gene
// hold none of its entries (the check saw to that): they are skipped without a search.
// Only checked entries are read (StoreReader::CheckEntries): across the whole gene when
// it was checked whole, else within each run's DatasetEntries, the range its check
// covered.
template <typename Index, typename F>
void ForEachRun(const StoreReader& s, const EntryArrays& a, int64_t gene,
                const std::vector<GroupRange>& runs, F&& f) {
  const auto* idx = a.indices.As<Index>();
  const int64_t n_groups = s.n_groups();
  if (!a.all_checked && !s.GeneChecked(gene)) {
    for (const GroupRange& run : runs) {
      if (!s.Measured(run.dataset, gene)) continue;
      const auto [begin, end] = s.DatasetEntries(gene, run.dataset);
      const int64_t lo = Gallop(idx, begin, end, static_cast<Index>(run.begin));
      f(lo, Gallop(idx, lo, end, static_cast<Index>(run.end)));
    }
    return;
  }
  const int64_t gene_end = a.indptr.IntAt(gene + 1);
  int64_t from = a.indptr.IntAt(gene);
  for (const GroupRange& run : runs) {
    if (from >= gene_end) break;
    if (run.dataset >= 0 && !s.Measured(run.dataset, gene)) continue;
    int64_t lo = from, hi = gene_end;
    if (run.begin > 0) lo = Gallop(idx, from, gene_end, static_cast<Index>(run.begin));
    if (run.end < n_groups) hi = Gallop(idx, lo, gene_end, static_cast<Index>(run.end));
    f(lo, hi);
    from = hi;
  }
}

// Pass 1: nnz and sum per split.
template <typename Index, typename Nnz, typename Sum>
void ScanSums(const StoreReader& s, const EntryArrays& a, int64_t gene,
              const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
              Acc* acc) {
  const auto* idx = a.indices.As<Index>();
  const auto* nnz = a.nnz.As<Nnz>();
  const auto* sum = a.sum.As<Sum>();
  ForEachRun<Index>(s, a, gene, runs, [&](int64_t lo, int64_t hi) {
    // Consecutive entries mostly share a split (groups are sorted by cell type first):
    // sum in registers and write to the split's accumulator when the split changes,
    // instead of a read-modify-write through memory per entry.
    int32_t current = -1;
    uint64_t n = 0;
    double s1 = 0;
    for (int64_t k = lo; k < hi; ++k) {
      const int32_t split = split_of[static_cast<int64_t>(idx[k]) - base];
      if (split < 0) continue;  // a group outside the selection
      if (split != current) {
        if (current >= 0) {
          acc[current].nnz += n;
          acc[current].sum += s1;
        }
        current = split;
        n = 0;
        s1 = 0;
      }
      n += nnz[k];
      s1 += static_cast<double>(sum[k]);
    }
    if (current >= 0) {
      acc[current].nnz += n;
      acc[current].sum += s1;
    }
  });
}

// Pass 1 for roll-ups into many splits (a DE's donors), where consecutive entries
// rarely share one: added straight into each entry's split, without a branch.
template <typename Index, typename Nnz, typename Sum>
void ScanSumsScattered(const StoreReader& s, const EntryArrays& a, int64_t gene,
                       const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
                       Acc* acc) {
  const auto* idx = a.indices.As<Index>();
  const auto* nnz = a.nnz.As<Nnz>();
  const auto* sum = a.sum.As<Sum>();
  ForEachRun<Index>(s, a, gene, runs, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int32_t split = split_of[static_cast<int64_t>(idx[k]) - base];
      if (split < 0) continue;  // a group outside the selection
      Acc& a = acc[split];
      a.nnz += nnz[k];
      a.sum += static_cast<double>(sum[k]);
    }
  });
}

// Pass 2, with the splits' means known: per entry of group g (n cells, sum, m2),
// m2 + (sum − n·mean)²/n, all terms non-negative (Chan et al.'s pairwise combination in
// its two-pass form); format 1's sumsq is turned into m2 first.
template <typename Index, typename Sum, typename Second>
void ScanSecondMoment(const StoreReader& s, const EntryArrays& a, int64_t gene,
                      const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
                      const double* mean, const double* inverse_cells, SecondAcc* acc) {
  const auto* idx = a.indices.As<Index>();
  const auto* sum = a.sum.As<Sum>();
  const auto* second = a.second.As<Second>();
  const bool sumsq = s.second_moment_is_sumsq();
  const auto& n_cells = s.meta().n_cells;
  ForEachRun<Index>(s, a, gene, runs, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const auto group = static_cast<int64_t>(idx[k]);
      const int32_t split = split_of[group - base];
      if (split < 0) continue;  // a group outside the selection
      const auto n = static_cast<double>(n_cells[static_cast<size_t>(group)]);
      const auto s1 = static_cast<double>(sum[k]);
      double m2 = static_cast<double>(second[k]);
      if (sumsq) m2 = std::max(0.0, m2 - s1 * s1 * inverse_cells[group]);
      const double deviation = s1 - n * mean[split];
      acc[split].m2 += m2 + deviation * deviation * inverse_cells[group];
      acc[split].cells += n;
    }
  });
}

using SumsFn = void (*)(const StoreReader&, const EntryArrays&, int64_t,
                        const std::vector<GroupRange>&, int64_t, const int32_t*, Acc*);
using SecondFn = void (*)(const StoreReader&, const EntryArrays&, int64_t,
                          const std::vector<GroupRange>&, int64_t, const int32_t*, const double*,
                          const double*, SecondAcc*);

SumsFn PickSums(const StoreReader& s, bool scattered) {
  return VisitEntryTypes(s, [scattered](auto index, auto nnz, auto sum, auto) {
    return scattered ? &ScanSumsScattered<decltype(index), decltype(nnz), decltype(sum)>
                     : &ScanSums<decltype(index), decltype(nnz), decltype(sum)>;
  });
}
SecondFn PickSecond(const StoreReader& s) {
  return VisitEntryTypes(s, [](auto index, auto, auto sum, auto second) {
    return &ScanSecondMoment<decltype(index), decltype(sum), decltype(second)>;
  });
}

// Everything the per-gene scans of one query share (read-only while they run).
struct GeneScan {
  const StoreReader* store = nullptr;
  const EntryArrays* arrays = nullptr;  // the store's, or a copy of the entries read
  const std::vector<GroupRange>* runs = nullptr;
  int64_t base = 0;
  const int32_t* split_of = nullptr;
  size_t n_splits = 0, n_genes = 0, n_contributing = 0;
  const int64_t* cells = nullptr;         // per split
  const int32_t* contributing = nullptr;  // per contributing dataset: its index
  const int64_t* pairs_begin = nullptr;   // per contributing dataset, into:
  const int32_t* pair_split = nullptr;    // the splits with cells of that dataset
  const int64_t* pair_cells = nullptr;    // and how many
  const int32_t* all_splits = nullptr;    // 0, 1, ..., n_splits - 1
  // Many splits, each holding the cells of about one dataset (a DE's donors): per gene,
  // only the splits of the datasets that measured it are reset, summed and visited.
  bool sparse = false;
  const double* inverse_cells = nullptr;  // per group
  SumsFn sums = nullptr;
  SecondFn second = nullptr;  // null: no var/std asked
  // When set, each gene's splits go here (from whichever thread summed it) instead of
  // into the split-major matrix.
  const QueryEngine::RollUpVisitor* visit = nullptr;
};

// This gene's active splits (QueryEngine::GeneSplits), their n_cells (the cells of the
// datasets that measured the gene) and zeroed accumulators.
std::pair<const int32_t*, size_t> ActivateSplits(const GeneScan& q, size_t gi, int64_t gene,
                                                 ScanBuffers* b) {
  const StoreReader& s = *q.store;
  std::vector<Aggregate>& agg = b->gene;
  if (!q.sparse) {
    for (size_t sp = 0; sp < q.n_splits; ++sp) {
      agg[sp] = Aggregate{};
      agg[sp].n_cells = q.cells[sp];
      b->acc[sp] = Acc{0, 0};
    }
    for (size_t j = 0; j < q.n_contributing; ++j) {
      if (s.Measured(q.contributing[j], gene)) continue;
      for (int64_t k = q.pairs_begin[j]; k < q.pairs_begin[j + 1]; ++k)
        agg[static_cast<size_t>(q.pair_split[k])].n_cells -= q.pair_cells[k];
    }
    return {q.all_splits, q.n_splits};
  }
  b->active.clear();
  const auto stamp = static_cast<uint32_t>(gi + 1);
  for (size_t j = 0; j < q.n_contributing; ++j) {
    if (!s.Measured(q.contributing[j], gene)) continue;
    for (int64_t k = q.pairs_begin[j]; k < q.pairs_begin[j + 1]; ++k) {
      const auto sp = static_cast<size_t>(q.pair_split[k]);
      if (b->stamp[sp] != stamp) {
        b->stamp[sp] = stamp;
        b->active.push_back(static_cast<int32_t>(sp));
        agg[sp] = Aggregate{};
        b->acc[sp] = Acc{0, 0};
      }
      agg[sp].n_cells += q.pair_cells[k];
    }
  }
  return {b->active.data(), b->active.size()};
}

// Pass 2 and the second moment of the active splits (their sums known).
void AddSecondMoment(const GeneScan& q, int64_t gene, const int32_t* active, size_t n_active,
                     ScanBuffers* b) {
  std::vector<Aggregate>& agg = b->gene;
  for (size_t i = 0; i < n_active; ++i) {
    const auto sp = static_cast<size_t>(active[i]);
    b->mean[sp] = agg[sp].n_cells > 0 ? agg[sp].sum / static_cast<double>(agg[sp].n_cells) : 0;
    b->second[sp] = SecondAcc{0, 0};
  }
  q.second(*q.store, *q.arrays, gene, *q.runs, q.base, q.split_of, b->mean.data(), q.inverse_cells,
           b->second.data());
  for (size_t i = 0; i < n_active; ++i) {
    const auto sp = static_cast<size_t>(active[i]);
    // The groups without an entry hold zeros: their cells lie mean away from the mean.
    const double zero_cells = static_cast<double>(agg[sp].n_cells) - b->second[sp].cells;
    agg[sp].m2 = b->second[sp].m2 + zero_cells * b->mean[sp] * b->mean[sp];
  }
}

// Genes [begin, end) of `genes` into agg[split * n_genes + gene] (zeroed by the caller),
// or to the visitor.
void ScanGenes(const GeneScan& q, const std::vector<int32_t>& genes, size_t begin, size_t end,
               ScanBuffers* b, Aggregate* agg) {
  const size_t n_splits = q.n_splits, n_genes = q.n_genes;
  std::vector<Aggregate>& gene = b->gene;  // this gene's splits
  gene.assign(n_splits, Aggregate{});
  b->acc.assign(n_splits, Acc{0, 0});
  b->stamp.assign(n_splits, 0);
  if (q.second) {
    b->mean.assign(n_splits, 0);
    b->second.assign(n_splits, SecondAcc{0, 0});
  }
  for (size_t gi = begin; gi < end; ++gi) {
    const auto [active, n_active] = ActivateSplits(q, gi, genes[gi], b);
    q.sums(*q.store, *q.arrays, genes[gi], *q.runs, q.base, q.split_of, b->acc.data());
    for (size_t i = 0; i < n_active; ++i) {
      const auto sp = static_cast<size_t>(active[i]);
      gene[sp].nnz = static_cast<int64_t>(b->acc[sp].nnz);
      gene[sp].sum = b->acc[sp].sum;
    }
    if (q.second) AddSecondMoment(q, genes[gi], active, n_active, b);
    if (q.visit) {
      (*q.visit)(gi, QueryEngine::GeneSplits{gene.data(), active, n_active});
      if (q.sparse)  // the next gene's inactive splits must read as zeros
        for (size_t i = 0; i < n_active; ++i) gene[static_cast<size_t>(active[i])] = Aggregate{};
    } else {
      for (size_t i = 0; i < n_active; ++i) {
        const auto sp = static_cast<size_t>(active[i]);
        agg[sp * n_genes + gi] = gene[sp];
      }
    }
  }
}

// Every gene: on this thread, or, when the genes hold at least `parallel_min_entries`
// entries, on every core, each thread taking a run of genes with about equal entries
// (a gene is always summed by one thread in one order, so the answer is the same bits).
void ScanAllGenes(const GeneScan& q, const std::vector<int32_t>& genes,
                  int64_t parallel_min_entries, ScanBuffers* own, Aggregate* agg) {
  const ArrayView& indptr = q.arrays->indptr;
  std::vector<int64_t> before(genes.size() + 1, 0);  // entries of the genes before each
  for (size_t gi = 0; gi < genes.size(); ++gi)
    before[gi + 1] = before[gi] + indptr.IntAt(genes[gi] + 1) - indptr.IntAt(genes[gi]);
  const auto cores = static_cast<int64_t>(Cores());
  const int64_t workers =
      std::min<int64_t>({cores, static_cast<int64_t>(genes.size()),
                         before.back() / std::max<int64_t>(1, parallel_min_entries / 2)});
  if (parallel_min_entries <= 0 || before.back() < parallel_min_entries || workers < 2) {
    ScanGenes(q, genes, 0, genes.size(), own, agg);
    return;
  }
  std::vector<size_t> cut(static_cast<size_t>(workers) + 1, genes.size());
  cut[0] = 0;
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t target = before.back() * w / workers;
    cut[static_cast<size_t>(w)] = static_cast<size_t>(
        std::lower_bound(before.begin(), before.end(), target) - before.begin());
  }
  std::vector<std::thread> threads;
  for (int64_t w = 1; w < workers; ++w)
    threads.emplace_back([&, w] {
      ScanBuffers mine;
      ScanGenes(q, genes, cut[static_cast<size_t>(w)], cut[static_cast<size_t>(w) + 1], &mine, agg);
    });
  ScanGenes(q, genes, cut[0], cut[1], own, agg);
  for (auto& th : threads) th.join();
}

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

}  // namespace

namespace {

using LabelCodes = std::unordered_map<std::string, int32_t>;

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

// A where column and where its flags start in `allowed`.
struct WhereFilter {
  int32_t column;
  size_t offset;
};

// Sets flags[1 + code] for each of `values` of `column` (flags[0] for NA): the one
// matching rule of where clauses and DE sides (QueryEngine::MatchValues).
Status MatchInto(const StoreData& m, int32_t column, const LabelCodes& codes,
                 const std::vector<std::string>& present, const std::vector<std::string>& values,
                 const std::string& context, uint8_t* flags) {
  const std::string& name = m.columns[static_cast<size_t>(column)];
  if (values.empty()) return Status::InvalidArgument("no value given for column '" + name + "'");
  for (const auto& value : values) {
    auto it = codes.find(value);
    if (value == "NA") {  // missing values (and a value literally called NA, if any)
      flags[0] = 1;
      if (it != codes.end()) flags[1 + static_cast<size_t>(it->second)] = 1;
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
    CC_RETURN_IF_ERROR(MatchInto(m, c, label_code[column], present_values[column], clause.values,
                                 "", allowed.data() + offset));
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
Status QueryEngine::SelectGroupsInto(const Population& population,
                                     std::vector<int32_t>* selected) const {
  thread_local SelectScratch w;
  thread_local std::vector<WhereFilter> filters;
  const StoreReader& s = *store_;
  CC_RETURN_IF_ERROR(MarkDatasets(population.datasets, impl_->label_code[0], s.meta().labels[0],
                                  w.dataset_selected));
  CC_RETURN_IF_ERROR(AllowValues(*this, population.where, impl_->label_code,
                                 impl_->present_values, filters, w.allowed, w.dataset_selected));
  CandidateRuns(s, w.dataset_selected, w.runs);
  CollectGroups(s, filters, w, *selected);
  return Status::Ok();
}

Result<std::vector<int32_t>> QueryEngine::SelectGroups(const Population& population) const {
  std::vector<int32_t> out;
  CC_RETURN_IF_ERROR(SelectGroupsInto(population, &out));
  return out;
}

Result<std::vector<uint8_t>> QueryEngine::MatchValues(int32_t column,
                                                      const std::vector<std::string>& values,
                                                      const std::string& context) const {
  const auto c = static_cast<size_t>(column);
  std::vector<uint8_t> flags(store_->meta().labels[c].size() + 1, 0);
  CC_RETURN_IF_ERROR(MatchInto(store_->meta(), column, impl_->label_code[c],
                               impl_->present_values[c], values, context, flags.data()));
  return flags;
}

// Per (split, gene), split-major: the statistics of the groups assigned to each split
// (SPEC §2; `groups` ascending, `split_of_group` per group), n_cells counting only the
// datasets that measured the gene; m2 only when `want_m2`. The entries to be read are
// checked first (SPEC §10). The one roll-up behind queries and DE.
namespace {

// The runs of groups to scan, one per dataset (within a dataset, unselected groups in
// between are skipped), each selected group's split (t.split_of, from t.runs' first
// group), the cells per split, and the datasets with a selected group.
Status PlanRuns(const StoreReader& s, const std::vector<int32_t>& groups,
                const std::vector<int32_t>& split_of_group, int32_t n_splits, RollUpScratch& t) {
  const std::vector<int32_t>& group_dataset = s.group_dataset();
  const size_t n_selected = groups.size();
  t.runs.clear();
  for (size_t i = 0; i < n_selected; ++i) {
    const int32_t g = groups[i];
    if (i > 0 && g <= groups[i - 1]) return Status::Internal("roll-up groups are not ascending");
    const int32_t dataset = group_dataset[static_cast<size_t>(g)];
    if (t.runs.empty() || dataset != t.runs.back().dataset)
      t.runs.push_back({g, g + 1, dataset});
    else
      t.runs.back().end = g + 1;
  }
  const int64_t base = t.runs.front().begin;
  t.split_of.assign(static_cast<size_t>(t.runs.back().end - base), -1);  // -1: unselected
  t.cells.assign(n_splits, 0);
  t.contributing.clear();
  t.contributing_index.assign(static_cast<size_t>(s.n_datasets()), -1);
  t.selected_contributing.resize(n_selected);
  t.selected_cells.resize(n_selected);
  for (size_t i = 0; i < n_selected; ++i) {
    const int32_t g = groups[i];
    const int32_t split = split_of_group[i];
    if (split < 0 || split >= n_splits) return Status::Internal("roll-up split out of range");
    t.split_of[static_cast<size_t>(g - base)] = split;
    const int64_t cells = s.meta().n_cells[static_cast<size_t>(g)];
    t.cells[static_cast<size_t>(split)] += cells;
    t.selected_cells[i] = cells;
    const auto d = static_cast<size_t>(group_dataset[static_cast<size_t>(g)]);
    if (t.contributing_index[d] < 0) {
      t.contributing_index[d] = static_cast<int32_t>(t.contributing.size());
      t.contributing.push_back(static_cast<int32_t>(d));
    }
    t.selected_contributing[i] = t.contributing_index[d];
  }
  return Status::Ok();
}

// Per contributing dataset, the splits holding its cells and how many (t.pairs_*): a
// gene's splits count the cells of the datasets that measured it. Returns whether the
// roll-up is sparse: many splits, few of them holding cells of several datasets.
bool PlanPairs(const std::vector<int32_t>& split_of_group, int32_t n_splits, RollUpScratch& t) {
  const size_t n_selected = split_of_group.size();
  const std::vector<int32_t>& contributing = t.selected_contributing;
  t.pairs_begin.assign(1, 0);
  t.pair_split.clear();
  t.pair_cells.clear();
  t.last_pair.assign(static_cast<size_t>(n_splits), -1);
  // The selected groups by contributing dataset: in order in a store cellcube wrote (each
  // dataset's groups together), else sorted so.
  const bool together = std::is_sorted(contributing.begin(), contributing.end());
  if (!together) {
    t.by_dataset.resize(n_selected);
    std::iota(t.by_dataset.begin(), t.by_dataset.end(), 0);
    std::stable_sort(t.by_dataset.begin(), t.by_dataset.end(),
                     [&](size_t a, size_t b) { return contributing[a] < contributing[b]; });
  }
  for (size_t n = 0; n < n_selected; ++n) {
    const size_t i = together ? n : t.by_dataset[n];
    const auto sp = static_cast<size_t>(split_of_group[i]);
    if (n > 0 && contributing[i] != contributing[together ? n - 1 : t.by_dataset[n - 1]])
      t.pairs_begin.push_back(static_cast<int64_t>(t.pair_split.size()));
    if (t.last_pair[sp] < t.pairs_begin.back()) {
      t.last_pair[sp] = static_cast<int32_t>(t.pair_split.size());
      t.pair_split.push_back(static_cast<int32_t>(sp));
      t.pair_cells.push_back(0);
    }
    t.pair_cells[static_cast<size_t>(t.last_pair[sp])] += t.selected_cells[i];
  }
  t.pairs_begin.push_back(static_cast<int64_t>(t.pair_split.size()));
  if (t.all_splits.size() != static_cast<size_t>(n_splits)) {
    t.all_splits.resize(static_cast<size_t>(n_splits));
    std::iota(t.all_splits.begin(), t.all_splits.end(), 0);
  }
  return n_splits >= 64 && t.pair_split.size() <= 2 * static_cast<size_t>(n_splits);
}

}  // namespace

// Plans the runs and the per-dataset splits, checks the entries they will read, then scans
// every gene (on every core when that pays) into the matrix or the visitor.
Status QueryEngine::RollUpInto(const std::vector<int32_t>& genes,
                               const std::vector<int32_t>& groups,
                               const std::vector<int32_t>& split_of_group, int32_t n_splits,
                               bool want_m2, std::vector<Aggregate>* out,
                               const RollUpVisitor* visit) const {
  thread_local RollUpScratch t;
  const StoreReader& s = *store_;
  if (out) out->clear();
  if (groups.size() != split_of_group.size()) return Status::Internal("roll-up sizes differ");
  if (groups.empty() || n_splits <= 0) {
    const std::vector<Aggregate> none(static_cast<size_t>(std::max(0, n_splits)));
    if (out) out->assign(none.size() * genes.size(), Aggregate{});
    if (visit)
      for (size_t gi = 0; gi < genes.size(); ++gi)
        (*visit)(gi, GeneSplits{none.data(), nullptr, 0});
    return Status::Ok();
  }
  if (!t.PlannedFor(store_, groups, split_of_group, n_splits)) {
    t.planned_n_splits = -1;  // no plan until this one is whole
    CC_RETURN_IF_ERROR(PlanRuns(s, groups, split_of_group, n_splits, t));
    t.sparse = PlanPairs(split_of_group, n_splits, t);
    t.planned_store = store_;
    t.planned_groups = groups;
    t.planned_splits = split_of_group;
    t.planned_n_splits = n_splits;
  }
  const bool sparse = t.sparse;
  CC_ASSIGN_OR_RETURN(const StoreReader::PreparedRead read, s.PrepareRead(genes, t.contributing));

  GeneScan scan;
  scan.store = &s;
  scan.arrays = &read.arrays;
  scan.runs = &t.runs;
  scan.base = t.runs.front().begin;
  scan.split_of = t.split_of.data();
  scan.n_splits = static_cast<size_t>(n_splits);
  scan.n_genes = genes.size();
  scan.n_contributing = t.contributing.size();
  scan.cells = t.cells.data();
  scan.contributing = t.contributing.data();
  scan.pairs_begin = t.pairs_begin.data();
  scan.pair_split = t.pair_split.data();
  scan.pair_cells = t.pair_cells.data();
  scan.all_splits = t.all_splits.data();
  scan.sparse = sparse;
  scan.inverse_cells = impl_->inverse_cells.data();
  scan.sums = PickSums(s, sparse);
  scan.second = want_m2 ? PickSecond(s) : nullptr;
  scan.visit = visit;
  if (out) out->assign(static_cast<size_t>(n_splits) * genes.size(), Aggregate{});
  if (!genes.empty())
    ScanAllGenes(scan, genes, impl_->parallel_min_entries, &t.buffers, out ? out->data() : nullptr);
  return Status::Ok();
}

Result<std::vector<Aggregate>> QueryEngine::RollUp(const std::vector<int32_t>& genes,
                                                   const std::vector<int32_t>& groups,
                                                   const std::vector<int32_t>& split_of_group,
                                                   int32_t n_splits, bool want_m2) const {
  std::vector<Aggregate> out;
  CC_RETURN_IF_ERROR(RollUpInto(genes, groups, split_of_group, n_splits, want_m2, &out, nullptr));
  return out;
}

Status QueryEngine::RollUpEach(const std::vector<int32_t>& genes,
                               const std::vector<int32_t>& groups,
                               const std::vector<int32_t>& split_of_group, int32_t n_splits,
                               bool want_m2, const RollUpVisitor& visit) const {
  return RollUpInto(genes, groups, split_of_group, n_splits, want_m2, nullptr, &visit);
}

namespace {

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
uint64_t NumberSplits(const StoreData& m, const std::vector<int32_t>& by, Scratch& t) {
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

// The answer from the roll-up t.agg (split-major): genes, split labels, and the rows of
// (split, gene)s with cells.
void FillResult(const StoreReader& s, const std::vector<int32_t>& genes,
                const std::vector<int32_t>& by, uint64_t n_splits, const Scratch& t,
                QueryResult* result) {
  const StoreData& m = s.meta();
  result->gene_indices = genes;
  for (int32_t g : genes) {
    result->genes.emplace_back(s.gene_ids()[static_cast<size_t>(g)]);
    result->symbols.emplace_back(s.gene_symbols()[static_cast<size_t>(g)]);
  }
  result->n_splits = static_cast<int64_t>(n_splits);
  result->split_labels.reserve(n_splits * by.size());
  static const std::string kNA = "NA";
  for (size_t sp = 0; sp < n_splits; ++sp) {
    const auto g = static_cast<size_t>(t.representative[sp]);
    for (int32_t c : by) {
      const int32_t code = m.codes[static_cast<size_t>(c)][g];
      result->split_labels.push_back(
          code < 0 ? kNA : m.labels[static_cast<size_t>(c)][static_cast<size_t>(code)]);
    }
  }
  const size_t n_genes = genes.size();
  result->rows.reserve(n_splits * n_genes);
  for (size_t sp = 0; sp < n_splits; ++sp)
    for (size_t gi = 0; gi < n_genes; ++gi) {
      const Aggregate& a = t.agg[sp * n_genes + gi];
      if (a.n_cells > 0)
        result->rows.push_back({static_cast<int32_t>(sp), static_cast<int32_t>(gi), a});
    }
}

}  // namespace

// Resolve the genes and split columns, select the groups, number their splits, roll
// up, and lay out the answer.
Result<QueryResult> QueryEngine::Run(const Query& q) const {
  thread_local Scratch t;
  QueryResult result;
  CC_ASSIGN_OR_RETURN(result.metrics, ParseMetrics(q.metrics));
  if (q.genes.empty()) return Status::InvalidArgument("no genes asked for");
  CC_ASSIGN_OR_RETURN(std::vector<int32_t> genes, ResolveGenes(q.genes));
  CC_ASSIGN_OR_RETURN(std::vector<int32_t> by, SplitColumns(*this, q, result.metrics));
  result.by = q.by;

  CC_RETURN_IF_ERROR(SelectGroupsInto(q.population, &t.selected));
  if (t.selected.empty()) {
    result.notes.push_back(kNoCellsSelected);
    return result;
  }
  result.datasets = query::DatasetsOf(store_->meta(), t.selected);
  const uint64_t n_splits = NumberSplits(store_->meta(), by, t);
  bool want_m2 = false;
  for (Metric metric : result.metrics) want_m2 |= metric == Metric::kVar || metric == Metric::kStd;
  CC_RETURN_IF_ERROR(RollUpInto(genes, t.selected, t.split, static_cast<int32_t>(n_splits), want_m2,
                                &t.agg, nullptr));
  FillResult(*store_, genes, by, n_splits, t, &result);
  // Selected groups have cells, so a split is empty only where no dataset measured the gene.
  if (result.rows.empty())
    result.notes.push_back(kNotMeasured);
  else
    impl_->scales->Annotate(*store_, t.selected, t.split, &result);
  return result;
}

}  // namespace cellcube
