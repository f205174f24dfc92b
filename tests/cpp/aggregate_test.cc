#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "aggregate/accumulator.h"
#include "aggregate/grouping.h"
#include "aggregate/transform.h"

namespace cellcube::aggregate {
namespace {

TEST(Transform, AutoPicksCp10kOnlyForNonNegativeIntegers) {
  EXPECT_EQ(ChooseTransform({0, 1, 5, 300}), Transform::kCp10kLog1p);
  EXPECT_EQ(ChooseTransform({0, 1.5}), Transform::kNone);
  EXPECT_EQ(ChooseTransform({0, -1}), Transform::kNone);
  EXPECT_EQ(ChooseTransform({0, std::nan("")}), Transform::kNone);
  EXPECT_EQ(ChooseTransform({}), Transform::kCp10kLog1p);
  EXPECT_FALSE(ParseTransform("sqrt").ok());
  EXPECT_DOUBLE_EQ(ApplyTransform(Transform::kCp10kLog1p, 2, Cp10kScale(4)), std::log1p(5000.0));
  EXPECT_EQ(Cp10kScale(0), 0.0);
}

TEST(Grouping, GroupsSortedByCodesWithMissingLast) {
  std::vector<int32_t> type = {1, 0, 1, 0, 1};
  std::vector<int32_t> stage = {-1, 2, 0, 2, -1};
  auto g = GroupCells({&type, &stage}, {"cell_type", "stage"}, {2, 3}, 100);
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g->n_groups(), 3);
  EXPECT_EQ(g->group_codes[0], (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(g->group_codes[1], (std::vector<int32_t>{2, 0, -1}));
  EXPECT_EQ(g->n_cells, (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(g->group_of_cell, (std::vector<int32_t>{2, 0, 1, 0, 2}));
}

TEST(Grouping, TooManyGroupsNamesTheWidestColumns) {
  std::vector<int32_t> a = {0, 1, 2, 3};
  std::vector<int32_t> b = {0, 0, 0, 0};
  auto g = GroupCells({&a, &b}, {"donor", "sex"}, {4, 1}, 3);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("donor (4 values)"), std::string::npos);
  EXPECT_NE(g.status().message().find("--max-groups"), std::string::npos);
}

SparseBlock Rows(std::vector<int64_t> offsets, std::vector<int32_t> minor, std::vector<double> v,
                 int64_t begin = 0) {
  SparseBlock b;
  b.major_begin = begin;
  b.major_count = static_cast<int64_t>(offsets.size()) - 1;
  b.offsets = std::move(offsets);
  b.minor = std::move(minor);
  b.values = std::move(v);
  return b;
}

TEST(Accumulator, RowAndColumnBlocksGiveTheSameStatistics) {
  // 3 cells x 2 genes: [[1, 0], [2, 3], [0, 4]]; cells 0 and 2 in group 0, cell 1 in 1.
  std::vector<int32_t> group_of_cell = {0, 1, 0};
  CellContext ctx{&group_of_cell, Transform::kLog1p, nullptr, nullptr};
  Accumulator by_rows(2, 0, 2);
  ASSERT_FALSE(by_rows.AddRows(Rows({0, 1, 3, 4}, {0, 0, 1, 1}, {1, 2, 3, 4}), ctx, 0, 1));
  Accumulator by_cols(2, 0, 2);
  ASSERT_FALSE(by_cols.AddColumns(Rows({0, 2, 4}, {0, 1, 1, 2}, {1, 2, 3, 4}), ctx));
  for (int32_t g = 0; g < 2; ++g)
    for (int32_t j = 0; j < 2; ++j) {
      EXPECT_EQ(by_rows.At(g, j).nnz, by_cols.At(g, j).nnz);
      EXPECT_DOUBLE_EQ(by_rows.At(g, j).sum, by_cols.At(g, j).sum);
      EXPECT_DOUBLE_EQ(SlotM2(by_rows.At(g, j), 2), SlotM2(by_cols.At(g, j), 2));
    }
  EXPECT_DOUBLE_EQ(by_rows.At(0, 1).sum, std::log1p(4.0));
  EXPECT_EQ(by_rows.At(1, 0).nnz, 1u);
}

TEST(Accumulator, SeesValuesBelowZeroAfterTheTransform) {
  // 2 cells x 2 genes; only the second gene goes below 0, and only under `none`.
  std::vector<int32_t> group_of_cell = {0, 0};
  const SparseBlock rows = Rows({0, 2, 4}, {0, 1, 0, 1}, {1, 0.5, 2, -0.25});
  const SparseBlock cols = Rows({0, 2, 4}, {0, 1, 0, 1}, {1, 2, 0.5, -0.25});
  for (bool by_rows : {true, false}) {
    CellContext none{&group_of_cell, Transform::kNone, nullptr, nullptr};
    Accumulator both(1, 0, 2), first_gene(1, 0, 1), positive(1, 0, 2);
    auto add = [&](Accumulator& acc, const SparseBlock& b, const CellContext& ctx) {
      return by_rows ? acc.AddRows(rows, ctx, 0, 1) : acc.AddColumns(b, ctx);
    };
    ASSERT_FALSE(add(both, cols, none));
    EXPECT_TRUE(both.saw_negative()) << by_rows;
    // A pass over genes [0, 1) does not look at gene 1's values.
    ASSERT_FALSE(add(first_gene, cols, none));
    EXPECT_FALSE(first_gene.saw_negative()) << by_rows;
    // log1p(-0.25) is below 0 too; log1p of the non-negative values is not.
    CellContext log1p{&group_of_cell, Transform::kLog1p, nullptr, nullptr};
    ASSERT_FALSE(add(both, cols, log1p));
    EXPECT_TRUE(both.saw_negative());
    const SparseBlock plus = Rows({0, 2, 4}, {0, 1, 0, 1}, {1, 0.5, 2, 0.25});
    ASSERT_FALSE(by_rows ? positive.AddRows(plus, none, 0, 1) : positive.AddColumns(plus, none));
    EXPECT_FALSE(positive.saw_negative()) << by_rows;
  }
}

TEST(Accumulator, WorkersSplitGenesAndAddUpToOneWorker) {
  // 2 cells x 200 genes (genes beyond one owner span), every gene valued.
  std::vector<int32_t> group_of_cell = {0, 0};
  std::vector<int64_t> offsets = {0, 200, 400};
  std::vector<int32_t> minor;
  std::vector<double> values;
  for (int c = 0; c < 2; ++c)
    for (int g = 0; g < 200; ++g) {
      minor.push_back(g);
      values.push_back(0.1 * (g + 1) + c);
    }
  SparseBlock block = Rows(offsets, minor, values);
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, nullptr};
  Accumulator one(1, 0, 200), split(1, 0, 200);
  ASSERT_FALSE(one.AddRows(block, ctx, 0, 1));
  for (int w = 0; w < 3; ++w) ASSERT_FALSE(split.AddRows(block, ctx, w, 3));
  for (int32_t g = 0; g < 200; ++g) {
    EXPECT_EQ(one.At(0, g).sum, split.At(0, g).sum);  // the same bits
    EXPECT_EQ(one.At(0, g).nnz, 2u);
  }
}

TEST(Accumulator, GeneRankReordersGenes) {
  std::vector<int32_t> group_of_cell = {0};
  std::vector<int32_t> rank = {2, 0, 1};  // matrix gene 0 is the accumulator's gene 2
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, &rank};
  Accumulator acc(1, 0, 3);
  ASSERT_FALSE(acc.AddRows(Rows({0, 3}, {0, 1, 2}, {5, 6, 7}), ctx, 0, 1));
  EXPECT_EQ(acc.At(0, 2).sum, 5);
  EXPECT_EQ(acc.At(0, 0).sum, 6);
  EXPECT_EQ(acc.At(0, 1).sum, 7);
  std::vector<std::pair<int32_t, double>> seen;
  acc.ForEachStored([&](int32_t gene, int32_t, const SlotStats& s) {
    seen.push_back({gene, s.sum});
  });
  EXPECT_EQ(seen, (std::vector<std::pair<int32_t, double>>{{0, 6}, {1, 7}, {2, 5}}));
}

TEST(Accumulator, Cp10kUsesTheWholeRowTotal) {
  std::vector<int32_t> group_of_cell = {0};
  CellContext ctx{&group_of_cell, Transform::kCp10kLog1p, nullptr, nullptr};
  // Only gene 1 is in range, but gene 0 still counts toward the cell's total.
  Accumulator acc(1, 1, 2);
  ASSERT_FALSE(acc.AddRows(Rows({0, 2}, {0, 1}, {3, 1}), ctx, 0, 1));
  EXPECT_DOUBLE_EQ(acc.At(0, 1).sum, std::log1p(1 * 1e4 / 4));
}

TEST(Accumulator, ReportsTheFirstNonFiniteValue) {
  std::vector<int32_t> group_of_cell = {0, 0};
  CellContext ctx{&group_of_cell, Transform::kLog1p, nullptr, nullptr};
  Accumulator acc(1, 0, 3);
  auto bad = acc.AddRows(Rows({0, 1, 2}, {2, 1}, {1, -2}), ctx, 0, 1);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->cell, 1);
  EXPECT_EQ(bad->gene, 1);
  EXPECT_TRUE(std::isnan(bad->transformed));
}

TEST(Accumulator, CountsOnlyPositiveValuesAsExpressing) {
  std::vector<int32_t> group_of_cell = {0, 0};
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, nullptr};
  Accumulator acc(1, 0, 1);
  ASSERT_FALSE(acc.AddRows(Rows({0, 1, 2}, {0, 0}, {-1.5, 2}), ctx, 0, 1));
  EXPECT_EQ(acc.At(0, 0).nnz, 1u);
  EXPECT_DOUBLE_EQ(acc.At(0, 0).sum, 0.5);
  EXPECT_DOUBLE_EQ(SlotM2(acc.At(0, 0), 2), 1.75 * 1.75 * 2);  // about the mean 0.25
}

TEST(Accumulator, SecondMomentOfNearlyEqualLargeValuesKeepsItsDigits) {
  // Four cells at 1e5 + 0.1 i, and a fifth cell without a value (a zero), in one group;
  // then the same four cells alone. Σv² − (Σv)²/n would keep about 2 of 16 digits here.
  std::vector<int32_t> group_of_cell = {0, 0, 0, 0, 0};
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, nullptr};
  Accumulator acc(1, 0, 1);
  ASSERT_FALSE(acc.AddRows(
      Rows({0, 1, 2, 3, 4, 4}, {0, 0, 0, 0}, {1e5, 1e5 + 0.1, 1e5 + 0.2, 1e5 + 0.3}), ctx, 0, 1));
  EXPECT_NEAR(SlotM2(acc.At(0, 0), 4), 0.05, 1e-10);
  // With the zero cell: mean m = (4e5 + 0.6) / 5, m2 = Σ(v − m)² + m².
  const double m = (4e5 + 0.6) / 5;
  double want = m * m;
  for (double v : {1e5, 1e5 + 0.1, 1e5 + 0.2, 1e5 + 0.3}) want += (v - m) * (v - m);
  EXPECT_NEAR(SlotM2(acc.At(0, 0), 5), want, 1e-12 * want);
}

// ---- histogram slots (docs/FORMAT.md "Histograms") ----

// The bin of v > 0 by the definition, scanning the edges: e_i < v <= e_(i+1), e_i = i * w
// as doubles, e_64 = H; above H the top bin.
int ReferenceBin(double v, double max) {
  const double w = max / 64;
  for (int i = 0; i < 63; ++i)
    if (v <= (i + 1 == 64 ? max : (i + 1) * w)) return i;
  return 63;
}

// Cells in groups of 3 (a list of bins), 100 (uint8 counts), 300 (uint16) and 70,000
// (uint32 counts) cells over 5 genes, values drawn among zeros, negatives, exact edges,
// values between them and above H: the bins of every slot, added by rows (on one and on
// three workers) and by columns, match binning each value by the definition.
TEST(AccumulatorHistograms, EverySlotKindBinsAsTheDefinition) {
  const std::vector<int64_t> n_cells = {3, 100, 300, 70000};
  std::vector<int32_t> group_of_cell;
  for (size_t g = 0; g < n_cells.size(); ++g)
    group_of_cell.insert(group_of_cell.end(), static_cast<size_t>(n_cells[g]),
                         static_cast<int32_t>(g));
  const int n_genes = 5;
  const double max = 4.0;
  std::mt19937 rng(7);
  std::vector<int64_t> offsets = {0};
  std::vector<int32_t> minor;
  std::vector<double> values;
  std::vector<std::vector<histogram::Counts>> want(n_cells.size(),
                                                   std::vector<histogram::Counts>(n_genes));
  int64_t above = 0;
  for (size_t cell = 0; cell < group_of_cell.size(); ++cell) {
    for (int gene = 0; gene < n_genes; ++gene) {
      if (rng() % 3 == 0) continue;
      double v;
      switch (rng() % 5) {
        case 0:
          v = static_cast<double>(rng() % 65) * (max / 64);
          break;  // an edge (or 0)
        case 1:
          v = -1.5;
          break;
        case 2:
          v = max + 1 + rng() % 3;
          break;
        default:
          v = std::ldexp(static_cast<double>(rng() % 4096), -10);
          break;
      }
      minor.push_back(gene);
      values.push_back(v);
      if (v > 0) {
        ++want[static_cast<size_t>(group_of_cell[cell])][static_cast<size_t>(gene)]
              [static_cast<size_t>(ReferenceBin(v, max))];
        above += v > max;
      }
    }
    offsets.push_back(static_cast<int64_t>(minor.size()));
  }
  const SparseBlock rows = Rows(offsets, minor, values);
  // The same values by columns (genes as majors, cells ascending).
  std::vector<int64_t> col_offsets = {0};
  std::vector<int32_t> col_minor;
  std::vector<double> col_values;
  for (int gene = 0; gene < n_genes; ++gene) {
    for (size_t cell = 0; cell + 1 < offsets.size(); ++cell)
      for (int64_t k = offsets[cell]; k < offsets[cell + 1]; ++k)
        if (minor[static_cast<size_t>(k)] == gene) {
          col_minor.push_back(static_cast<int32_t>(cell));
          col_values.push_back(values[static_cast<size_t>(k)]);
        }
    col_offsets.push_back(static_cast<int64_t>(col_minor.size()));
  }
  const SparseBlock cols = Rows(col_offsets, col_minor, col_values);
  const HistogramSpec spec{histogram::Layout(max), &n_cells};
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, nullptr};
  const auto groups = static_cast<int32_t>(n_cells.size());
  Accumulator one(groups, 0, n_genes, &spec), three(groups, 0, n_genes, &spec),
      by_cols(groups, 0, n_genes, &spec);
  ASSERT_FALSE(one.AddRows(rows, ctx, 0, 1));
  for (int w = 0; w < 3; ++w) ASSERT_FALSE(three.AddRows(rows, ctx, w, 3));
  ASSERT_FALSE(by_cols.AddColumns(cols, ctx));
  for (const Accumulator* acc : {&one, &three, &by_cols}) {
    EXPECT_EQ(acc->above_max(), above);
    for (int32_t g = 0; g < groups; ++g)
      for (int32_t gene = 0; gene < n_genes; ++gene) {
        histogram::Counts got{};
        acc->AddBinsOf(g, gene, &got);
        EXPECT_EQ(got, want[static_cast<size_t>(g)][static_cast<size_t>(gene)])
            << "group " << g << " gene " << gene;
        EXPECT_EQ(histogram::Total(got), acc->At(g, gene).nnz);
      }
  }
}

// A second positive value of one cell and gene (duplicate indices in a row) would make
// a group's expressing cells outnumber its cells: refused as a duplicate, never written
// past a list's end.
TEST(AccumulatorHistograms, DuplicateValuesAreRefusedNotOverflowed) {
  const std::vector<int64_t> n_cells = {1, 2};
  std::vector<int32_t> group_of_cell = {0, 1, 1};
  const HistogramSpec spec{histogram::Layout(histogram::kDefaultMax), &n_cells};
  CellContext ctx{&group_of_cell, Transform::kNone, nullptr, nullptr};
  Accumulator acc(2, 0, 2, &spec);
  // Cells 1 and 2 (group 1, two cells) each once: fine; then cell 0 twice for gene 1.
  ASSERT_FALSE(acc.AddRows(Rows({0, 0, 1, 2}, {1, 1}, {1, 2}, 0), ctx, 0, 1));
  auto bad = acc.AddRows(Rows({0, 2}, {1, 1}, {1.0, 3.0}, 0), ctx, 0, 1);
  ASSERT_TRUE(bad);
  EXPECT_TRUE(bad->duplicate);
  EXPECT_EQ(bad->cell, 0);
  EXPECT_EQ(bad->gene, 1);
  // Without histograms the statistics take it as before.
  Accumulator plain(2, 0, 2);
  EXPECT_FALSE(plain.AddRows(Rows({0, 2}, {1, 1}, {1.0, 3.0}, 0), ctx, 0, 1));
}

// The memory a pass's histograms take: per group its kind's bytes per gene, each row
// rounded up to a cache line.
TEST(AccumulatorHistograms, BytesFollowTheSlotKinds) {
  EXPECT_EQ(Accumulator::HistogramBytesFor({3}, 8), 64u);    // 24 list bytes, one line
  EXPECT_EQ(Accumulator::HistogramBytesFor({64}, 8), 512u);  // 64 list bytes per gene
  EXPECT_EQ(Accumulator::HistogramBytesFor({65, 255}, 8), 1024u);
  EXPECT_EQ(Accumulator::HistogramBytesFor({256, 65535}, 8), 2048u);
  EXPECT_EQ(Accumulator::HistogramBytesFor({65536}, 8), 2048u);
}

}  // namespace
}  // namespace cellcube::aggregate
