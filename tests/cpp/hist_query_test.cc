// The histogram layer as queries read it (docs/QUERY.md "Distribution metrics"): rows'
// bins are the sums of their groups' records, the metrics follow the definition, a
// dataset with negative values has none, and a damaged record is refused where it is
// read (docs/FORMAT.md "Validation rules") while queries that do not read it answer.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cellcube/h5ad.h"
#include "cellcube/query.h"
#include "cellcube/store.h"
#include "histogram/record.h"
#include "store/store_layout.h"

namespace cellcube {
namespace {

using histogram::Counts;

// Datasets "a" (3 groups: cell types T, B, T) and "z" (negative values: no histograms,
// 1 group of cell type T), 2 genes. Group g of "a", gene j: nnz = 2 + g + j cells, the
// k-th in bin (5 * j + 3 * k) % 64.
struct Fixture {
  StoreData store;
  std::vector<Counts> bins;  // per entry (empty for "z")
};

Fixture Make() {
  Fixture f;
  StoreData& s = f.store;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{"a", "z"}, {"T", "B"}};
  s.codes = {{0, 0, 0, 1}, {0, 1, 0, 0}};
  s.n_cells = {10, 12, 9, 8};
  s.hist_max = 6.4;
  s.gene_ids = {"g0", "g1"};
  s.gene_symbols = {"", ""};
  s.indptr = {0};
  for (int gene = 0; gene < 2; ++gene) {
    for (int group = 0; group < 4; ++group) {
      const bool negative = group == 3;
      const auto nnz = static_cast<uint32_t>(negative ? 3 : 2 + group + gene);
      Counts b{};
      for (uint32_t k = 0; k < nnz; ++k) ++b[static_cast<size_t>((5 * gene + 3 * k) % 64)];
      s.group.push_back(group);
      s.nnz.push_back(nnz);
      s.sum.push_back(nnz * 1.25 - (negative ? 7 : 0));
      s.m2.push_back(1.0);
      if (!negative) histogram::AppendRecord(b, nnz, &s.hist_data);
      s.hist_end.push_back(s.hist_data.size());
      f.bins.push_back(negative ? Counts{} : b);
    }
    s.indptr.push_back(static_cast<int64_t>(s.group.size()));
  }
  for (const char* name : {"a", "z"}) {
    DatasetRecord r;
    r.name = name;
    r.n_cells = name[0] == 'a' ? 31 : 8;
    r.n_genes = 2;
    r.n_groups = name[0] == 'a' ? 3 : 1;
    r.measured_genes = {0, 1};
    r.negative_values = name[0] == 'a' ? NegativeValues::kNone : NegativeValues::kSome;
    r.values_above_hist_max = name[0] == 'a' ? 0 : -1;
    r.transform = "none";
    s.datasets.push_back(r);
  }
  return f;
}

class HistQuery : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cellcube-histq-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fixture_ = Make();
    path_ = dir_ + "/s.h5ad";
    Status st = WriteStore(fixture_.store, path_);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::shared_ptr<const QueryEngine> Open() const {
    auto e = QueryEngine::Open(path_);
    EXPECT_TRUE(e.ok()) << e.status().message();
    return *e;
  }
  std::string dir_, path_;
  Fixture fixture_;
};

TEST_F(HistQuery, RowsAddTheirGroupsBinsAndMetricsFollowTheDefinition) {
  auto engine = Open();
  Query q;
  q.genes = {"g0", "g1"};
  q.by = {"cell_type"};
  q.population.datasets = {"a"};
  q.metrics = {"n_cells", "nnz", "median", "q05", "q25", "q75", "q95", "median_expr", "max"};
  auto r = engine->Run(q);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->bins.size(), r->rows.size());
  ASSERT_EQ(r->rows.size(), 4u);  // T, B x g0, g1
  const histogram::Layout layout(6.4);
  for (size_t i = 0; i < r->rows.size(); ++i) {
    const auto& row = r->rows[i];
    const bool t = r->Label(row, 0) == "T";
    Counts want{};
    uint64_t nnz = 0;
    int64_t cells = 0;
    for (int group : t ? std::vector<int>{0, 2} : std::vector<int>{1}) {
      const Counts& b = fixture_.bins[static_cast<size_t>(row.gene * 4 + group)];
      for (size_t k = 0; k < b.size(); ++k) want[k] += b[k];
      nnz += histogram::Total(b);
      cells += fixture_.store.n_cells[static_cast<size_t>(group)];
    }
    EXPECT_EQ(r->bins[i], want);
    EXPECT_EQ(row.stats.nnz, static_cast<int64_t>(nnz));
    const auto zeros = static_cast<uint64_t>(cells) - nnz;
    EXPECT_DOUBLE_EQ(r->Value(i, Metric::kMedian), layout.Quantile(want, zeros, 0.5));
    EXPECT_DOUBLE_EQ(r->Value(i, Metric::kQ95), layout.Quantile(want, zeros, 0.95));
    EXPECT_DOUBLE_EQ(r->Value(i, Metric::kMedianExpr), layout.Quantile(want, 0, 0.5));
    EXPECT_DOUBLE_EQ(r->Value(i, Metric::kMax), layout.Max(want));
    EXPECT_GT(r->Value(i, Metric::kMax), 0);
  }
}

TEST_F(HistQuery, NegativeDatasetsHaveNoDistribution) {
  auto engine = Open();
  Query q;
  q.genes = {"g0"};
  q.by = {"dataset"};
  q.distribution = true;
  auto r = engine->Run(q);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->rows.size(), 2u);
  EXPECT_TRUE(r->HasDistribution(0));
  EXPECT_FALSE(r->HasDistribution(1));  // dataset z
  EXPECT_TRUE(std::isnan(r->Value(1, Metric::kMedian)));
  EXPECT_EQ(r->bins[1], Counts{});  // its records were never read
}

TEST_F(HistQuery, DamagedRecordRefusedWhereRead) {
  // The first record (gene g0, group 0: 2 cells, list form) gets a bin out of range.
  {
    auto f = h5ad::File::Open(path_);
    ASSERT_TRUE(f.ok());
    auto e = (*f)->Locate(store_layout::kHistData);
    ASSERT_TRUE(e.ok() && e->in_place);
    std::fstream io(path_, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(e->offset));
    const char bad = 70;
    io.write(&bad, 1);
  }
  auto engine = Open();
  Query mean;
  mean.genes = {"g0"};
  mean.metrics = {"mean"};
  EXPECT_TRUE(engine->Run(mean).ok());  // reads no histogram
  Query median = mean;
  median.metrics = {"median"};
  auto r = engine->Run(median);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("histograms of gene 'g0'"), std::string::npos)
      << r.status().message();
  median.genes = {"g1"};  // another gene's records are good
  EXPECT_TRUE(engine->Run(median).ok());
  EXPECT_FALSE(engine->store().CheckAllGenes().ok());
}

TEST_F(HistQuery, StoresWithoutHistogramsSayHowToRebuild) {
  StoreData s = fixture_.store;
  s.hist_max = 0;
  s.hist_end.clear();
  s.hist_data.clear();
  for (auto& d : s.datasets) d.values_above_hist_max = -1;
  const std::string plain = dir_ + "/plain.h5ad";
  ASSERT_TRUE(WriteStore(s, plain).ok());
  auto e = QueryEngine::Open(plain);
  ASSERT_TRUE(e.ok());
  Query q;
  q.genes = {"g0"};
  q.metrics = {"q25"};
  auto r = (*e)->Run(q);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no histograms"), std::string::npos);
  EXPECT_NE(r.status().message().find("rebuild"), std::string::npos);
}

}  // namespace
}  // namespace cellcube
