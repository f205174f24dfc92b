// Differential expression (include/cellcube/de.h, docs/DE.md): the sides and donors are
// groups of the population (QueryEngine::SelectGroups), their statistics one roll-up
// (QueryEngine::RollUp); Student's t distribution and the normal tail (erfc) are
// Boost.Math's.
#include "cellcube/de.h"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>

#include "histogram/histogram.h"
#include "query/scales.h"
#include "util/scratch_pool.h"
#include "util/text.h"

namespace cellcube {
namespace {

constexpr double kEmpty = std::numeric_limits<double>::quiet_NaN();

using StudentsT = boost::math::students_t_distribution<
    double, boost::math::policies::policy<boost::math::policies::promote_double<false>>>;

double TwoSidedP(double t, double df) {
  const double p = 2 * boost::math::cdf(boost::math::complement(StudentsT(df), std::fabs(t)));
  return std::min(1.0, p);
}

// Sorted as small keys, then moved once: rows are large, and there are 20,000 or more.
struct OrderKey {
  double padj, neg_abs_logfc;
  int32_t gene;
  uint32_t row;
};

// One DE's buffers, reused by the next (util/scratch_pool.h): megabytes of fresh pages
// cost more than the test itself.
struct DeScratch {
  std::vector<DeRow> rows;     // tested rows, in gene order
  std::vector<DeRow> by_gene;  // per candidate gene (the roll-up's visitor fills them)
  std::vector<uint8_t> tested;
  std::vector<OrderKey> keys;
  std::vector<DeRow> sorted;
};

ScratchPool<DeScratch>& DeScratchPool() {
  static ScratchPool<DeScratch> pool;
  return pool;
}

// An option as the caller's surface spells it: "--min-cells" or "min_cells".
std::string Opt(OptionNames names, std::string flag) {
  if (names == OptionNames::kFlags) return "--" + flag;
  std::replace(flag.begin(), flag.end(), '-', '_');
  return flag;
}

// An option with a value: "--donor COL" or "donor=COL".
std::string OptWith(OptionNames names, const std::string& flag, const std::string& value) {
  return Opt(names, flag) + (names == OptionNames::kFlags ? " " : "=") + value;
}

// The donor column: the one asked for, else the first of docs/DE.md's names; -1 = none.
Result<int32_t> DonorColumn(const QueryEngine& engine, const std::string& asked) {
  if (!asked.empty()) return engine.ColumnIndex(asked);
  const std::string name = DefaultDonorColumn(engine.store().meta());
  if (name.empty()) return -1;
  return engine.ColumnIndex(name);
}

// The comparison, resolved to groups: every group of the population on side 0 or 1,
// and the donors (dataset, donor value) kept on each side.
struct Design {
  std::vector<int32_t> groups;  // ascending
  std::vector<int32_t> side;    // per group: 0 or 1
  int64_t cells[2] = {0, 0};
  int32_t donor_column = -1;
  std::vector<std::pair<int32_t, int32_t>> units;  // (dataset, donor code), kept somewhere
  std::vector<int32_t> unit_of_group;              // per group: into units, or -1
  std::vector<uint8_t> kept[2];                    // per unit and side
  int64_t kept_count[2] = {0, 0};
  int64_t paired = 0;                // units kept on both sides
  std::vector<std::string> lacking;  // datasets without the compared column: on neither side
};

// Whether a dataset has a column of its own (docs/DE.md): the store's columns, its
// group-by columns and its donor column; a column it lacks is NA for all its cells, which
// says nothing about which side they are on.
bool DatasetHas(const DatasetRecord& d, const std::string& column) {
  return column == "dataset" || column == "cell_type" ||
         (column == "donor" && !d.donor_column.empty()) ||
         std::find(d.groupby.begin(), d.groupby.end(), column) != d.groupby.end();
}

// `population`: the groups o.population selects, ascending.
Result<Design> Resolve(const QueryEngine& engine, const DeOptions& o,
                       const std::vector<int32_t>& population) {
  const StoreData& m = engine.store().meta();
  const OptionNames n = o.testing.names;
  if (o.compare.empty())
    return Status::InvalidArgument("no column to compare (" + OptWith(n, "compare", "COL") + ")");
  CC_ASSIGN_OR_RETURN(const int32_t column, engine.ColumnIndex(o.compare));
  if (o.group1.empty())
    return Status::InvalidArgument("no " + Opt(n, "group1") + " value to compare");
  const bool rest = o.group2.empty() || (o.group2.size() == 1 && o.group2[0] == "rest");
  if (!rest && std::find(o.group2.begin(), o.group2.end(), "rest") != o.group2.end())
    return Status::InvalidArgument(OptWith(n, "group2", "rest") +
                                   " stands alone: it cannot be mixed with values");
  for (const auto& v : o.group1)
    if (!rest && std::find(o.group2.begin(), o.group2.end(), v) != o.group2.end())
      return Status::InvalidArgument("value '" + v + "' is named on both sides");
  // Under a roll-up a term means its subtree, and `rest` leaves out the cells labelled
  // with a strict ancestor of side 1's terms (docs/ONTOLOGY.md "DE and markers").
  const auto& rollup = o.population.rollup;
  const bool rolled = std::find(rollup.begin(), rollup.end(), o.compare) != rollup.end();
  CC_ASSIGN_OR_RETURN(auto flags1, engine.MatchValues(column, o.group1, Opt(n, "group1"), rolled));
  std::vector<uint8_t> flags2;
  std::vector<uint8_t> neither(flags1.size(), 0);
  if (!rest) {
    CC_ASSIGN_OR_RETURN(flags2, engine.MatchValues(column, o.group2, Opt(n, "group2"), rolled));
    for (size_t l = 0; l < flags1.size(); ++l)
      if (flags1[l] && flags2[l])
        return Status::InvalidArgument(
            Opt(n, "group2") + " overlaps " + Opt(n, "group1") + ": value '" +
            (l ? m.labels[static_cast<size_t>(column)][l - 1] : std::string("NA")) +
            "' is on both sides" + (rolled ? " (a term stands for its whole subtree)" : ""));
  } else if (rolled) {
    neither = engine.AncestorValues(column, o.group1);
  }
  Design d;
  CC_ASSIGN_OR_RETURN(d.donor_column, DonorColumn(engine, o.testing.donor));
  const auto& codes = m.codes[static_cast<size_t>(column)];
  std::map<std::pair<int32_t, int32_t>, int32_t> unit_index;
  std::vector<int64_t> unit_cells[2];
  std::vector<int8_t> has(m.datasets.size(), -1);  // per dataset: has the column? (-1: not asked)
  for (int32_t g : population) {
    const auto ds = static_cast<size_t>(m.codes[0][static_cast<size_t>(g)]);
    if (has[ds] < 0) {
      has[ds] = DatasetHas(m.datasets[ds], o.compare) ? 1 : 0;
      if (!has[ds]) d.lacking.push_back(m.datasets[ds].name);
    }
    if (!has[ds]) continue;
    const auto flag = static_cast<size_t>(codes[static_cast<size_t>(g)] + 1);
    int32_t side = -1;
    if (flags1[flag])
      side = 0;
    else if ((rest && !neither[flag]) || (!rest && flags2[flag]))
      side = 1;
    if (side < 0) continue;
    const int64_t n = m.n_cells[static_cast<size_t>(g)];
    d.groups.push_back(g);
    d.side.push_back(side);
    d.cells[side] += n;
    int32_t unit = -1;
    if (d.donor_column >= 0) {
      const int32_t donor = m.codes[static_cast<size_t>(d.donor_column)][static_cast<size_t>(g)];
      if (donor >= 0) {
        const auto key = std::make_pair(m.codes[0][static_cast<size_t>(g)], donor);
        auto [it, fresh] = unit_index.emplace(key, static_cast<int32_t>(d.units.size()));
        if (fresh) {
          d.units.push_back(key);
          unit_cells[0].push_back(0);
          unit_cells[1].push_back(0);
        }
        unit = it->second;
        unit_cells[side][static_cast<size_t>(unit)] += n;
      }
    }
    d.unit_of_group.push_back(unit);
  }
  for (int side = 0; side < 2; ++side)
    if (d.cells[side] == 0)
      return Status::InvalidArgument(std::string("side ") + (side ? "2" : "1") +
                                     " has no cells in the selected population");
  for (int side = 0; side < 2; ++side) {
    d.kept[side].assign(d.units.size(), 0);
    for (size_t u = 0; u < d.units.size(); ++u)
      if (unit_cells[side][u] >= o.testing.min_cells && unit_cells[side][u] > 0) {
        d.kept[side][u] = 1;
        ++d.kept_count[side];
      }
  }
  for (size_t u = 0; u < d.units.size(); ++u) d.paired += d.kept[0][u] && d.kept[1][u];
  return d;
}

// Welch's t-test (and Cohen's d with the pooled deviation) from two samples' sizes,
// means and sample variances; `row` gets t, df, effect (empty where undefined).
void Welch(double n1, double mean1, double var1, double n2, double mean2, double var2, DeRow* row) {
  row->t = row->df = row->effect = row->pvalue = kEmpty;
  if (n1 < 2 || n2 < 2) return;
  const double a = var1 / n1, b = var2 / n2;
  const double pooled = ((n1 - 1) * var1 + (n2 - 1) * var2) / (n1 + n2 - 2);
  if (pooled > 0) row->effect = (mean1 - mean2) / std::sqrt(pooled);
  if (!(a + b > 0)) return;
  row->t = (mean1 - mean2) / std::sqrt(a + b);
  row->df = (a + b) * (a + b) / (a * a / (n1 - 1) + b * b / (n2 - 1));
  row->pvalue = TwoSidedP(row->t, row->df);
}

struct Moments {
  double n = 0, mean = 0, m2 = 0;  // Welford over the units' values
  void Add(double x) {
    n += 1;
    const double delta = x - mean;
    mean += delta / n;
    m2 += delta * (x - mean);
  }
  double Var() const { return n >= 2 ? m2 / (n - 1) : kEmpty; }
};

enum class Test { kCells, kDonorsUnpaired, kDonorsPaired, kWilcoxon };

double Mean(const Aggregate& a) { return a.sum / static_cast<double>(a.n_cells); }

// Both sides' Welford passes at once, each over its values in order: the same bits as
// one after the other, while the two chains of divisions overlap.
void AddBoth(const std::vector<double>& a, const std::vector<double>& b, Moments* x, Moments* y) {
  Moments p = *x, q = *y;  // in registers, not through memory
  const size_t both = std::min(a.size(), b.size());
  for (size_t i = 0; i < both; ++i) {
    p.Add(a[i]);
    q.Add(b[i]);
  }
  for (size_t i = both; i < a.size(); ++i) p.Add(a[i]);
  for (size_t i = both; i < b.size(); ++i) q.Add(b[i]);
  *x = p;
  *y = q;
}

// Unpaired donors: Welch's test on the means of the donors kept on each side.
// Split side * n_units + u holds donor u's aggregate on that side for this gene.
void TestDonorsUnpaired(const Design& d, const QueryEngine::GeneSplits& splits, DeRow* row) {
  const size_t n_units = d.units.size();
  thread_local std::vector<double> means[2];  // per side, in the order of the splits
  means[0].clear();
  means[1].clear();
  for (size_t i = 0; i < splits.n_active; ++i) {
    const auto sp = static_cast<size_t>(splits.active[i]);
    if (sp >= 2 * n_units) continue;  // the rest of a side
    const size_t side = sp >= n_units ? 1 : 0, u = sp - side * n_units;
    const Aggregate& a = splits.at[sp];
    if (d.kept[side][u] && a.n_cells > 0) means[side].push_back(Mean(a));  // it measured the gene
  }
  Moments x[2];
  AddBoth(means[0], means[1], &x[0], &x[1]);
  row->n_donors1 = static_cast<int64_t>(x[0].n);
  row->n_donors2 = static_cast<int64_t>(x[1].n);
  row->mean1 = x[0].n > 0 ? x[0].mean : kEmpty;
  row->mean2 = x[1].n > 0 ? x[1].mean : kEmpty;
  Welch(x[0].n, x[0].mean, x[0].Var(), x[1].n, x[1].mean, x[1].Var(), row);
}

// Paired donors: a t-test on the differences of the donors kept on both sides.
void TestDonorsPaired(const Design& d, const QueryEngine::GeneSplits& splits, DeRow* row) {
  const size_t n_units = d.units.size();
  Moments diff, x1, x2;
  for (size_t i = 0; i < splits.n_active; ++i) {
    const auto u = static_cast<size_t>(splits.active[i]);
    if (u >= n_units || !d.kept[0][u] || !d.kept[1][u]) continue;  // side 1 comes with side 0
    const Aggregate& a = splits.at[u];
    const Aggregate& b = splits.at[n_units + u];
    if (a.n_cells <= 0 || b.n_cells <= 0) continue;
    diff.Add(Mean(a) - Mean(b));
    x1.Add(Mean(a));
    x2.Add(Mean(b));
  }
  row->n_donors1 = row->n_donors2 = static_cast<int64_t>(diff.n);
  row->mean1 = diff.n > 0 ? x1.mean : kEmpty;
  row->mean2 = diff.n > 0 ? x2.mean : kEmpty;
  row->t = row->df = row->effect = row->pvalue = kEmpty;
  if (diff.n < 2) return;
  const double sd = std::sqrt(diff.Var());
  if (!(sd > 0)) return;
  row->effect = diff.mean / sd;
  row->t = diff.mean / (sd / std::sqrt(diff.n));
  row->df = diff.n - 1;
  row->pvalue = TwoSidedP(row->t, row->df);
}

// The Wilcoxon rank-sum (Mann-Whitney U) test on the two sides' binned values (docs/DE.md):
// 65 tie classes, the zeros below bin 0; z with the continuity correction, t = z, effect
// = the AUC U1 / (n1 n2), df empty; empty where every cell is tied (sigma = 0).
void Wilcoxon(const Bins& bins1, uint64_t zeros1, const Bins& bins2, uint64_t zeros2, DeRow* row) {
  row->t = row->df = row->effect = row->pvalue = kEmpty;
  const auto n1 = static_cast<double>(zeros1 + histogram::Total(bins1));
  const auto n2 = static_cast<double>(zeros2 + histogram::Total(bins2));
  const uint64_t n = zeros1 + zeros2 + histogram::Total(bins1) + histogram::Total(bins2);
  if (n1 <= 0 || n2 <= 0 || n < 2) return;
  // Class 0 (the zeros), then the bins: U1 counts side 2's cells below each side-1 cell,
  // a half for each tie.
  double u1 = 0, below2 = 0;
  unsigned __int128 ties = 0;  // sum of t^3 - t: beyond 64 bits for classes of 3 million
  for (int c = 0; c <= histogram::kBins; ++c) {
    const uint64_t a = c == 0 ? zeros1 : bins1[static_cast<size_t>(c - 1)];
    const uint64_t b = c == 0 ? zeros2 : bins2[static_cast<size_t>(c - 1)];
    u1 += static_cast<double>(a) * (below2 + static_cast<double>(b) / 2);
    below2 += static_cast<double>(b);
    const unsigned __int128 t = a + b;
    ties += t * t * t - t;
  }
  const double mu = n1 * n2 / 2;
  const auto nn = static_cast<long double>(n);
  const double tie_share = static_cast<double>(static_cast<long double>(ties) / (nn * (nn - 1)));
  const double var = n1 * n2 / 12 * ((static_cast<double>(n) + 1) - tie_share);
  if (!(var > 0)) return;  // every cell tied
  const double sigma = std::sqrt(var);
  const double deviation = std::max(0.0, std::fabs(u1 - mu) - 0.5);
  row->t = (u1 >= mu ? 1 : -1) * deviation / sigma;
  row->pvalue = std::min(1.0, boost::math::erfc(std::fabs(row->t) / std::sqrt(2.0)));
  row->effect = u1 / (n1 * n2);
}

// A tested row's sides: their cells and the fractions expressing (every test).
void DescribeSides(const Aggregate side[2], DeRow* row) {
  row->n_cells1 = side[0].n_cells;
  row->n_cells2 = side[1].n_cells;
  row->frac1 = static_cast<double>(side[0].nnz) / static_cast<double>(side[0].n_cells);
  row->frac2 = static_cast<double>(side[1].nnz) / static_cast<double>(side[1].n_cells);
}

// The Wilcoxon test of two sides (their statistics and bins): means over the cells, then
// the rank-sum over the binned values, the cells without a value above 0 as zeros.
void TestWilcoxon(const Aggregate side[2], const Bins& bins1, const Bins& bins2, DeRow* row) {
  row->mean1 = Mean(side[0]);
  row->mean2 = Mean(side[1]);
  Wilcoxon(bins1, static_cast<uint64_t>(side[0].n_cells - side[0].nnz), bins2,
           static_cast<uint64_t>(side[1].n_cells - side[1].nnz), row);
}

// The splits of the one roll-up a test needs: under cells, the two sides (with m2);
// under donors, each donor in the test on each side (side * units + unit), then the
// rest of each side (2 * units + side), whose sum with the side's donors is the side.
struct SplitPlan {
  std::vector<int32_t> split;  // per design group
  int32_t n_splits = 2;
};

SplitPlan PlanSplits(const Design& d, Test test) {
  SplitPlan p;
  if (test == Test::kCells || test == Test::kWilcoxon) {
    p.split = d.side;
    return p;
  }
  const auto n_units = static_cast<int32_t>(d.units.size());
  p.n_splits = 2 * n_units + 2;
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const int32_t u = d.unit_of_group[i], side = d.side[i];
    bool in_test = false;
    if (u >= 0) {
      const auto uu = static_cast<size_t>(u);
      in_test = test == Test::kDonorsPaired ? d.kept[0][uu] && d.kept[1][uu] : d.kept[side][uu];
    }
    p.split.push_back(in_test ? side * n_units + u : 2 * n_units + side);
  }
  return p;
}

// The genes some dataset of each side measured: the only ones a side can have cells of.
std::vector<int32_t> CandidateGenes(const QueryEngine& engine, const Design& d) {
  const StoreReader& s = engine.store();
  const MeasuredBits& measured = s.measured();
  const auto words = static_cast<size_t>(measured.words_per_row());
  std::vector<uint64_t> any[2] = {std::vector<uint64_t>(words, 0), std::vector<uint64_t>(words, 0)};
  std::vector<uint8_t> seen[2] = {std::vector<uint8_t>(static_cast<size_t>(s.n_datasets()), 0),
                                  std::vector<uint8_t>(static_cast<size_t>(s.n_datasets()), 0)};
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const int32_t dataset = s.group_dataset()[static_cast<size_t>(d.groups[i])];
    auto& flag = seen[d.side[i]][static_cast<size_t>(dataset)];
    if (flag) continue;
    flag = 1;
    const uint64_t* row = measured.row(dataset);
    for (size_t w = 0; w < words; ++w) any[d.side[i]][w] |= row[w];
  }
  std::vector<int32_t> genes;
  for (int64_t g = 0; g < s.n_genes(); ++g)
    if ((any[0][static_cast<size_t>(g / 64)] & any[1][static_cast<size_t>(g / 64)]) >> (g & 63) & 1)
      genes.push_back(static_cast<int32_t>(g));
  return genes;
}

// Each side's cells, nnz and sum over its splits, in their order: a donor's split is
// side * units + unit, the rest of a side 2 * units + side. Both sides' sums stay in
// registers, each adding 0 where the split is the other side's: the same bits as adding
// to one side only (a sum that starts at +0 never becomes -0, so + 0 leaves it as is).
void TallySides(const QueryEngine::GeneSplits& splits, size_t n_units, Aggregate side[2]) {
  int64_t cells[2] = {0, 0}, nnz[2] = {0, 0};
  double sum0 = 0, sum1 = 0;
  for (size_t i = 0; i < splits.n_active; ++i) {
    const auto sp = static_cast<size_t>(splits.active[i]);
    const Aggregate& a = splits.at[sp];
    const size_t to = sp >= 2 * n_units ? sp - 2 * n_units : (sp >= n_units ? 1 : 0);
    cells[to] += a.n_cells;
    nnz[to] += a.nnz;
    sum0 += to == 0 ? a.sum : 0.0;
    sum1 += to == 1 ? a.sum : 0.0;
  }
  side[0].n_cells = cells[0];
  side[1].n_cells = cells[1];
  side[0].nnz = nnz[0];
  side[1].nnz = nnz[1];
  side[0].sum = sum0;
  side[1].sum = sum1;
}

// Every gene: its row when both sides have cells in datasets that measured it.
Status TestAllGenes(const QueryEngine& engine, const Design& d, Test test, DeScratch& scratch,
                    std::vector<DeRow>* rows) {
  const std::vector<int32_t> genes = CandidateGenes(engine, d);
  const SplitPlan plan = PlanSplits(d, test);
  const size_t n_units = d.units.size();
  std::vector<DeRow>& by_gene = scratch.by_gene;  // the visitor fills it from any thread
  std::vector<uint8_t>& tested = scratch.tested;
  by_gene.resize(genes.size());
  tested.assign(genes.size(), 0);
  const QueryEngine::RollUpVisitor visit = [&](size_t gi, const QueryEngine::GeneSplits& splits) {
    Aggregate side[2];
    if (test == Test::kCells || test == Test::kWilcoxon) {
      side[0] = splits.at[0];
      side[1] = splits.at[1];
    } else {
      TallySides(splits, n_units, side);
    }
    if (side[0].n_cells <= 0 || side[1].n_cells <= 0) return;  // not tested
    DeRow& row = by_gene[gi];
    row = DeRow{};  // the buffer holds the previous DE's rows
    row.gene = genes[gi];
    DescribeSides(side, &row);
    if (test == Test::kCells) {
      row.mean1 = Mean(side[0]);
      row.mean2 = Mean(side[1]);
      const auto n1 = static_cast<double>(side[0].n_cells),
                 n2 = static_cast<double>(side[1].n_cells);
      Welch(n1, row.mean1, n1 >= 2 ? side[0].m2 / (n1 - 1) : kEmpty, n2, row.mean2,
            n2 >= 2 ? side[1].m2 / (n2 - 1) : kEmpty, &row);
    } else if (test == Test::kWilcoxon) {
      TestWilcoxon(side, splits.bins[0], splits.bins[1], &row);
    } else if (test == Test::kDonorsUnpaired) {
      TestDonorsUnpaired(d, splits, &row);
    } else {
      TestDonorsPaired(d, splits, &row);
    }
    row.logfc = row.mean1 - row.mean2;  // NaN when a side has no donor in the test
    tested[gi] = 1;
  };
  CC_RETURN_IF_ERROR(engine.RollUpEach(
      genes, d.groups, plan.split, plan.n_splits,
      QueryEngine::RollUpWants{test == Test::kCells, test == Test::kWilcoxon}, visit));
  for (size_t gi = 0; gi < genes.size(); ++gi)
    if (tested[gi]) rows->push_back(by_gene[gi]);
  return Status::Ok();
}

// What a Wilcoxon test needs: histograms, and no cells of a dataset whose values go below
// 0 (they are in no histogram).
Status CheckWilcoxon(const QueryEngine& engine, const DeOptions& o, const Design& d) {
  const StoreData& m = engine.store().meta();
  if (!m.has_histograms()) return engine.NoHistograms();
  for (int32_t g : d.groups) {
    const DatasetRecord& r = m.datasets[static_cast<size_t>(m.codes[0][static_cast<size_t>(g)])];
    if (r.negative_values == NegativeValues::kSome)
      return Status::InvalidArgument(
          OptWith(o.testing.names, "test", "wilcoxon") + " cannot rank the cells of dataset '" +
          r.name +
          "': its values go below 0 (scaled data), so its cells are in no histogram; leave it "
          "out (" +
          OptWith(o.testing.names, "datasets", "...") + ") or use " +
          OptWith(o.testing.names, "test", "cells"));
  }
  return Status::Ok();
}

// docs/DE.md's --test auto, and the note that says which test ran and why.
Result<Test> ChooseTest(const QueryEngine& engine, const DeOptions& o, const Design& d,
                        std::vector<std::string>* notes) {
  const std::string min = std::to_string(o.testing.min_cells);
  const std::string donors =
      d.donor_column < 0
          ? std::string("no donor column")
          : "donor column '" + engine.store().meta().columns[static_cast<size_t>(d.donor_column)] +
                "': " + std::to_string(d.kept_count[0]) + " and " +
                std::to_string(d.kept_count[1]) + " donors with at least " + min +
                " cells on the two sides";
  const bool enough = d.kept_count[0] >= 2 && d.kept_count[1] >= 2;
  if (o.testing.test == "wilcoxon") {
    CC_RETURN_IF_ERROR(CheckWilcoxon(engine, o, d));
    notes->push_back(
        "test: wilcoxon (Mann-Whitney U over the cells' binned values, as asked; t holds z, "
        "effect the AUC)");
    return Test::kWilcoxon;
  }
  if (o.testing.test == "cells") {
    notes->push_back("test: cells (Welch's t-test over the cells, as asked)");
    return Test::kCells;
  }
  if (o.testing.test == "donors" && !enough)
    return Status::InvalidArgument(
        OptWith(o.testing.names, "test", "donors") + " needs at least 2 donors with at least " +
        min + " cells on each side (" + donors + "); lower " + Opt(o.testing.names, "min-cells") +
        ", name the column with " + OptWith(o.testing.names, "donor", "COL") +
        ", or rebuild the store with 'cellcube build --donor COL'");
  if (o.testing.test != "donors" && o.testing.test != "auto")
    return Status::InvalidArgument(Opt(o.testing.names, "test") +
                                   " must be auto, donors, cells or wilcoxon, not '" +
                                   o.testing.test + "'");
  if (!enough) {
    notes->push_back(
        "test: cells (Welch's t-test over the cells), since the selection lacks 2 "
        "donors a side for a donor-level test (" +
        donors + ")");
    return Test::kCells;
  }
  if (d.paired >= 2) {
    notes->push_back(
        "test: donors, paired (t-test on per-donor differences): " + std::to_string(d.paired) +
        " donors with at least " + min + " cells on both sides");
    return Test::kDonorsPaired;
  }
  notes->push_back("test: donors, unpaired (Welch's t-test on per-donor means; " + donors + ")");
  return Test::kDonorsUnpaired;
}

// docs/DE.md's order: padj ascending, then |logfc| descending (empty last), then genes.
void Order(DeScratch& scratch, std::vector<DeRow>* rows) {
  using Key = OrderKey;
  auto finite = [](double v) {
    return std::isnan(v) ? std::numeric_limits<double>::infinity() : v;
  };
  std::vector<Key>& keys = scratch.keys;
  std::vector<DeRow>& sorted = scratch.sorted;
  keys.resize(rows->size());
  for (size_t i = 0; i < rows->size(); ++i) {
    const DeRow& r = (*rows)[i];
    keys[i] = {finite(r.padj), finite(-std::fabs(r.logfc)), r.gene, static_cast<uint32_t>(i)};
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    if (a.padj != b.padj) return a.padj < b.padj;
    if (a.neg_abs_logfc != b.neg_abs_logfc) return a.neg_abs_logfc < b.neg_abs_logfc;
    return a.gene < b.gene;
  });
  sorted.clear();
  for (const Key& k : keys) sorted.push_back((*rows)[k.row]);
  rows->swap(sorted);  // both stay the scratch's buffers
}

// The output filter de and markers share (docs/DE.md): `direction` up keeps logfc > 0,
// down logfc < 0, both every row; `min_frac` keeps genes expressed in at least that
// fraction of side 1's cells (up), side 2's (down) or either's (both).
bool PassesFilter(const std::string& direction, double min_frac, const DeRow& r) {
  if (direction == "up" && !(r.logfc > 0)) return false;
  if (direction == "down" && !(r.logfc < 0)) return false;
  if (min_frac > 0) {
    const bool up = r.frac1 >= min_frac, down = r.frac2 >= min_frac;
    if (direction == "up" ? !up : direction == "down" ? !down : !(up || down)) return false;
  }
  return true;
}

bool Keep(const DeOptions& o, const DeRow& r) { return PassesFilter(o.direction, o.min_frac, r); }

// The values PassesFilter accepts, checked before any work; errors name the options as
// the caller spells them.
Status CheckFilter(const std::string& direction, double min_frac, OptionNames n) {
  if (direction != "up" && direction != "down" && direction != "both")
    return Status::InvalidArgument(Opt(n, "direction") + " must be up, down or both, not '" +
                                   direction + "'");
  if (!(min_frac >= 0 && min_frac <= 1))
    return Status::InvalidArgument(Opt(n, "min-frac") +
                                   " must be a number from 0 to 1 (a fraction of cells)");
  return Status::Ok();
}

// Every tested gene's row with its padj, in gene order, and the test and notes in
// `result` (rows, ids and symbols left empty): what RunDe and RunMarkers order and cut.
// The notes on the compared datasets' scales go to `scale_notes` when it is not null.
Status TestedRows(const QueryEngine& engine, const DeOptions& o,
                  const std::vector<int32_t>& population, DeScratch& scratch, DeResult* result,
                  std::vector<std::string>* scale_notes) {
  std::vector<DeRow>* rows = &scratch.rows;
  const OptionNames n = o.testing.names;
  CC_RETURN_IF_ERROR(CheckFilter(o.direction, o.min_frac, n));
  if (o.testing.min_cells < 0)
    return Status::InvalidArgument(Opt(n, "min-cells") + " must be 0 or more");
  CC_ASSIGN_OR_RETURN(Design d, Resolve(engine, o, population));
  if (!d.lacking.empty()) {
    result->notes.push_back(std::to_string(d.lacking.size()) +
                            (d.lacking.size() == 1 ? " dataset has" : " datasets have") +
                            " no column '" + o.compare + "' (" + QuoteList(d.lacking, 10) +
                            "): their cells are on neither side");
  }
  CC_ASSIGN_OR_RETURN(const Test test, ChooseTest(engine, o, d, &result->notes));
  result->test = test == Test::kCells          ? "cells"
                 : test == Test::kWilcoxon     ? "wilcoxon"
                 : test == Test::kDonorsPaired ? "donors-paired"
                                               : "donors-unpaired";
  if (scale_notes)
    query::DatasetScales(engine.store().meta())
        .NoteComparison(engine.store().meta(), d.groups, scale_notes);
  rows->clear();
  CC_RETURN_IF_ERROR(TestAllGenes(engine, d, test, scratch, rows));
  std::vector<double> p;
  p.reserve(rows->size());
  for (const DeRow& r : *rows) p.push_back(r.pvalue);
  const std::vector<double> padj = BenjaminiHochberg(p);
  for (size_t i = 0; i < rows->size(); ++i) (*rows)[i].padj = padj[i];
  return Status::Ok();
}

void AppendNames(const QueryEngine& engine, const DeRow& r, DeResult* result) {
  result->gene_ids.emplace_back(engine.store().gene_ids()[static_cast<size_t>(r.gene)]);
  result->symbols.emplace_back(engine.store().gene_symbols()[static_cast<size_t>(r.gene)]);
}

}  // namespace

Result<DeResult> RunDe(const QueryEngine& engine, const DeOptions& o) {
  DeResult result;
  auto scratch = DeScratchPool().Take();
  CC_ASSIGN_OR_RETURN(const std::vector<int32_t> population, engine.SelectGroups(o.population));
  CC_RETURN_IF_ERROR(TestedRows(engine, o, population, *scratch, &result, &result.notes));
  std::vector<DeRow>& rows = scratch->rows;
  Order(*scratch, &rows);
  for (const DeRow& r : rows) {
    if (!Keep(o, r)) continue;
    if (o.top >= 0 && static_cast<int64_t>(result.rows.size()) >= o.top) break;
    result.rows.push_back(r);
    AppendNames(engine, r, &result);
  }
  return result;
}

namespace {

// The values a markers note holds for: "every cell_type", or the values themselves (the
// first 8, then how many more).
std::string ValuesSaying(const std::string& column, const std::vector<std::string>& values,
                         size_t of_all) {
  if (values.size() == of_all && of_all > 1) return "every " + column;
  std::string out;
  for (size_t i = 0; i < values.size() && i < 8; ++i) out += (i ? ", " : "") + values[i];
  if (values.size() > 8) out += " and " + std::to_string(values.size() - 8) + " more";
  return out;
}

}  // namespace

namespace {

// +1 when a markers row ranks by how much higher side 1 is, -1 by how much lower
// (docs/DE.md): down ranks every row by -logfc, both each by its own sign (|logfc|).
double Orientation(const std::string& direction, const DeRow& r) {
  if (direction == "down") return -1;
  if (direction == "both") return r.logfc < 0 ? -1 : 1;
  return 1;
}

// The markers of `value` among its tested `rows` (in gene order, padj set): the rows
// PassesFilter keeps (up by default: logfc > 0) with padj <= max_padj, by logfc (up;
// down: most negative first; both: |logfc|), then effect in the same direction, then
// gene; the first `top`.
void AppendMarkers(const QueryEngine& engine, const MarkersOptions& o, const std::string& value,
                   const std::vector<DeRow>& rows, MarkersResult* out) {
  std::vector<size_t> keep;
  for (size_t i = 0; i < rows.size(); ++i)
    if (PassesFilter(o.direction, o.min_frac, rows[i]) && rows[i].padj <= o.max_padj)
      keep.push_back(i);
  std::stable_sort(keep.begin(), keep.end(), [&](size_t a, size_t b) {
    const DeRow &x = rows[a], &y = rows[b];
    const double sx = Orientation(o.direction, x), sy = Orientation(o.direction, y);
    if (sx * x.logfc != sy * y.logfc) return sx * x.logfc > sy * y.logfc;
    const double ex = std::isnan(x.effect) ? -INFINITY : sx * x.effect;
    const double ey = std::isnan(y.effect) ? -INFINITY : sy * y.effect;
    if (ex != ey) return ex > ey;
    return x.gene < y.gene;
  });
  if (static_cast<int64_t>(keep.size()) > o.top) keep.resize(static_cast<size_t>(o.top));
  for (size_t i : keep) {
    out->values.push_back(value);
    out->de.rows.push_back(rows[i]);
    AppendNames(engine, rows[i], &out->de);
  }
}

// Wilcoxon markers in one roll-up (docs/DE.md): one split per value (and one for NA), each
// gene's histograms decoded once; a value's side 2 is the gene's total minus its side 1.
// The values markers run for (docs/ONTOLOGY.md "DE and markers"): each present value,
// or under a roll-up each shown term and plain value; each with its side 1 and the cells
// on neither side (per label + 1), less the values whose rest holds no cells.
struct MarkerValue {
  std::string label;
  std::vector<uint8_t> side, neither;
};

Result<std::vector<MarkerValue>> MarkerValues(const QueryEngine& engine, const MarkersOptions& o,
                                              int32_t column,
                                              const std::vector<int32_t>& population) {
  const StoreData& m = engine.store().meta();
  const auto& codes = m.codes[static_cast<size_t>(column)];
  const auto& rollup = o.population.rollup;
  const bool rolled = std::find(rollup.begin(), rollup.end(), o.column) != rollup.end();
  std::vector<std::string> labels;
  if (rolled) {
    for (const auto& v : engine.RolledValues(column, population)) labels.push_back(v.label);
  } else {
    std::vector<uint8_t> present(m.labels[static_cast<size_t>(column)].size(), 0);
    for (int32_t g : population)
      if (codes[static_cast<size_t>(g)] >= 0)
        present[static_cast<size_t>(codes[static_cast<size_t>(g)])] = 1;
    for (size_t l = 0; l < present.size(); ++l)
      if (present[l]) labels.push_back(m.labels[static_cast<size_t>(column)][l]);
  }
  std::vector<MarkerValue> out;
  for (const auto& label : labels) {
    MarkerValue v;
    v.label = label;
    CC_ASSIGN_OR_RETURN(v.side, engine.MatchValues(column, {label}, "", rolled));
    v.neither =
        rolled ? engine.AncestorValues(column, {label}) : std::vector<uint8_t>(v.side.size(), 0);
    bool rest = false;
    for (int32_t g : population) {
      const auto f = static_cast<size_t>(codes[static_cast<size_t>(g)] + 1);
      rest = rest || (!v.side[f] && !v.neither[f]);
    }
    if (rest) out.push_back(std::move(v));
  }
  return out;
}

// Sums the splits flagged (per label + 1; split l - 1 for label l, the last for NA).
void AddFlagged(const QueryEngine::GeneSplits& sp, const std::vector<uint8_t>& flags, Aggregate* a,
                Bins* bins) {
  const size_t na = flags.size() - 1;
  for (size_t f = 0; f < flags.size(); ++f) {
    if (!flags[f]) continue;
    const size_t j = f == 0 ? na : f - 1;
    a->n_cells += sp.at[j].n_cells;
    a->nnz += sp.at[j].nnz;
    a->sum += sp.at[j].sum;
    for (size_t b = 0; b < bins->size(); ++b) (*bins)[b] += sp.bins[j][b];
  }
}

Status WilcoxonMarkers(const QueryEngine& engine, const MarkersOptions& o, int32_t column,
                       const std::vector<int32_t>& population,
                       const std::vector<MarkerValue>& values, MarkersResult* out) {
  const StoreData& m = engine.store().meta();
  const auto& codes = m.codes[static_cast<size_t>(column)];
  const auto n_labels = static_cast<int32_t>(m.labels[static_cast<size_t>(column)].size());
  Design d;
  d.groups = population;
  std::vector<int32_t> split;  // one split per label, the last for NA
  for (int32_t g : population) {
    const int32_t code = codes[static_cast<size_t>(g)];
    split.push_back(code < 0 ? n_labels : code);
  }
  const auto k = static_cast<int32_t>(values.size());
  DeOptions as_de;
  as_de.testing = o.testing;
  CC_RETURN_IF_ERROR(CheckWilcoxon(engine, as_de, d));
  query::DatasetScales(m).NoteComparison(m, population, &out->de.notes);
  // The genes some selected dataset measured.
  const StoreReader& s = engine.store();
  std::vector<uint8_t> seen(static_cast<size_t>(s.n_datasets()), 0);
  for (int32_t g : population)
    seen[static_cast<size_t>(s.group_dataset()[static_cast<size_t>(g)])] = 1;
  std::vector<int32_t> genes;
  for (int64_t gene = 0; gene < s.n_genes(); ++gene)
    for (int64_t ds = 0; ds < s.n_datasets(); ++ds)
      if (seen[static_cast<size_t>(ds)] && s.Measured(ds, gene)) {
        genes.push_back(static_cast<int32_t>(gene));
        break;
      }
  const size_t n_genes = genes.size();
  std::vector<DeRow> rows(static_cast<size_t>(k) * n_genes);  // value-major
  std::vector<uint8_t> tested(rows.size(), 0);
  const QueryEngine::RollUpVisitor visit = [&](size_t gi, const QueryEngine::GeneSplits& sp) {
    Aggregate total;
    Bins total_bins{};
    for (int32_t j = 0; j <= n_labels; ++j) {
      const Aggregate& a = sp.at[j];
      total.n_cells += a.n_cells;
      total.nnz += a.nnz;
      total.sum += a.sum;
      for (size_t b = 0; b < total_bins.size(); ++b) total_bins[b] += sp.bins[j][b];
    }
    for (int32_t j = 0; j < k; ++j) {
      const MarkerValue& v = values[static_cast<size_t>(j)];
      Aggregate side[2] = {Aggregate(), total}, neither;
      Bins bins1{}, rest = total_bins, neither_bins{};
      AddFlagged(sp, v.side, &side[0], &bins1);
      AddFlagged(sp, v.neither, &neither, &neither_bins);
      side[1].n_cells -= side[0].n_cells + neither.n_cells;
      side[1].nnz -= side[0].nnz + neither.nnz;
      side[1].sum -= side[0].sum + neither.sum;
      if (side[0].n_cells <= 0 || side[1].n_cells <= 0) continue;
      for (size_t b = 0; b < rest.size(); ++b) rest[b] -= bins1[b] + neither_bins[b];
      DeRow& row = rows[static_cast<size_t>(j) * n_genes + gi];
      row.gene = genes[gi];
      DescribeSides(side, &row);
      TestWilcoxon(side, bins1, rest, &row);
      row.logfc = row.mean1 - row.mean2;
      tested[static_cast<size_t>(j) * n_genes + gi] = 1;
    }
  };
  CC_RETURN_IF_ERROR(engine.RollUpEach(genes, population, split, n_labels + 1,
                                       QueryEngine::RollUpWants{false, true}, visit));
  std::vector<DeRow> value_rows;
  for (int32_t j = 0; j < k; ++j) {
    value_rows.clear();
    for (size_t gi = 0; gi < n_genes; ++gi)
      if (tested[static_cast<size_t>(j) * n_genes + gi])
        value_rows.push_back(rows[static_cast<size_t>(j) * n_genes + gi]);
    std::vector<double> p;
    for (const DeRow& r : value_rows) p.push_back(r.pvalue);
    const std::vector<double> padj = BenjaminiHochberg(p);
    for (size_t i = 0; i < value_rows.size(); ++i) value_rows[i].padj = padj[i];
    AppendMarkers(engine, o, values[static_cast<size_t>(j)].label, value_rows, out);
  }
  std::vector<std::string> labels;
  for (const auto& v : values) labels.push_back(v.label);
  out->de.notes.push_back(ValuesSaying(o.column, labels, labels.size()) +
                          ": test: wilcoxon (Mann-Whitney U over the cells' binned values, as "
                          "asked; t holds z, effect the AUC)");
  out->de.test = "wilcoxon";
  return Status::Ok();
}

// Per row, the term id of its value, when an ontology backs the column.
void AddTermIds(const QueryEngine& engine, int32_t column, MarkersResult* out) {
  if (!engine.IsBacked(column)) return;
  std::map<std::string, std::string> id_of;
  for (const auto& v : out->values) {
    auto [it, fresh] = id_of.emplace(v, "");
    if (fresh) it->second = engine.TermIdOf(column, v);
    out->term_ids.push_back(it->second);
  }
}

}  // namespace

Result<MarkersResult> RunMarkers(const QueryEngine& engine, const MarkersOptions& o) {
  const OptionNames n = o.testing.names;
  if (o.top < 0) return Status::InvalidArgument(Opt(n, "top") + " must be 0 or more");
  if (!(o.max_padj >= 0 && o.max_padj <= 1))
    return Status::InvalidArgument(Opt(n, "max-padj") + " must be a number from 0 to 1");
  CC_RETURN_IF_ERROR(CheckFilter(o.direction, o.min_frac, n));
  CC_ASSIGN_OR_RETURN(const int32_t column, engine.ColumnIndex(o.column));
  // The population is selected once; each value's comparison splits it.
  CC_ASSIGN_OR_RETURN(const std::vector<int32_t> population, engine.SelectGroups(o.population));
  CC_ASSIGN_OR_RETURN(const std::vector<MarkerValue> marker_values,
                      MarkerValues(engine, o, column, population));
  std::vector<std::string> values;
  for (const auto& v : marker_values) values.push_back(v.label);
  if (values.size() < 2)
    return Status::InvalidArgument("markers need at least 2 values of '" + o.column +
                                   "' in the selected population; it has " +
                                   std::to_string(values.size()));
  MarkersResult out;
  out.column = o.column;
  if (o.testing.test == "wilcoxon") {
    CC_RETURN_IF_ERROR(WilcoxonMarkers(engine, o, column, population, marker_values, &out));
    AddTermIds(engine, column, &out);
    return out;
  }
  std::set<std::string> tests;
  auto scratch = DeScratchPool().Take();
  // Each value's notes (which test ran and why), said once for all the values they hold
  // for: ten cell types tested alike give one note, not ten.
  std::vector<std::pair<std::string, std::vector<std::string>>> by_note;
  for (const std::string& value : values) {
    DeOptions de;
    de.compare = o.column;
    de.group1 = {value};
    de.population = o.population;
    de.testing = o.testing;
    DeResult r;
    // Every value's comparison covers the whole population: its scales are noted once.
    CC_RETURN_IF_ERROR(TestedRows(engine, de, population, *scratch, &r,
                                  value == values.front() ? &out.de.notes : nullptr));
    const std::vector<DeRow>& rows = scratch->rows;  // in gene order
    tests.insert(r.test);
    for (const auto& note : r.notes) {
      auto same = std::find_if(by_note.begin(), by_note.end(),
                               [&](const auto& seen) { return seen.first == note; });
      if (same == by_note.end()) same = by_note.insert(by_note.end(), {note, {}});
      same->second.push_back(value);
    }
    AppendMarkers(engine, o, value, rows, &out);
  }
  for (const auto& [note, holds_for] : by_note)
    out.de.notes.push_back(ValuesSaying(o.column, holds_for, values.size()) + ": " + note);
  out.de.test = tests.size() == 1 ? *tests.begin() : "mixed";
  AddTermIds(engine, column, &out);
  return out;
}

std::string DefaultDonorColumn(const StoreData& meta) {
  for (const char* name : {"donor", "donor_id", "individual", "patient", "subject"})
    for (const auto& c : meta.columns)
      if (c == name) return c;
  return "";
}

const std::vector<std::string>& DeColumnNames() {
  static const std::vector<std::string> kNames = {
      "gene",  "symbol", "n_cells1", "n_cells2", "n_donors1", "n_donors2", "mean1",  "mean2",
      "frac1", "frac2",  "logfc",    "effect",   "t",         "df",        "pvalue", "padj"};
  return kNames;
}

std::vector<double> BenjaminiHochberg(const std::vector<double>& p) {
  std::vector<size_t> order;
  for (size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> out(p.size(), kEmpty);
  const auto m = static_cast<double>(order.size());
  double running = 1;
  for (size_t r = order.size(); r-- > 0;) {
    running = std::min(running, p[order[r]] * m / static_cast<double>(r + 1));
    out[order[r]] = running;
  }
  return out;
}

}  // namespace cellcube
