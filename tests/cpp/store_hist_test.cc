// Format 3's arrays as the writers write them and LoadStore reads them back
// (docs/FORMAT.md "raw.cellcube", "Histograms"): entry_offsets, hist_data, hist_indptr,
// hist_offsets, checked here against offsets counted independently from the entries.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "histogram/record.h"
#include "store/store_layout.h"

namespace cellcube {
namespace {

using histogram::Counts;

// Two datasets of `groups` groups each over 3 genes; dataset "neg" has negative values
// (its entries' records are empty). Entry (group, gene) holds nnz = (group + gene) % 4
// cells (entries with nnz 0 are not stored), binned at bins gene * 7 + i for its i-th cell.
StoreData TwoDatasets(int groups) {
  StoreData s;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{"pos", "neg"}, {"T"}};
  s.hist_max = histogram::kDefaultMax;
  for (int d = 0; d < 2; ++d)
    for (int g = 0; g < groups; ++g) {
      s.codes.resize(2);
      s.codes[0].push_back(d);
      s.codes[1].push_back(0);
      s.n_cells.push_back(5);
    }
  s.gene_ids = {"g0", "g1", "g2"};
  s.gene_symbols = {"", "", ""};
  s.indptr = {0};
  for (int gene = 0; gene < 3; ++gene) {
    for (int group = 0; group < 2 * groups; ++group) {
      const auto nnz = static_cast<uint32_t>((group + gene) % 4);
      if (nnz == 0) continue;
      s.group.push_back(group);
      s.nnz.push_back(nnz);
      s.sum.push_back(nnz * 1.5);
      s.m2.push_back(0.25);
      if (group < groups) {
        Counts bins{};
        for (uint32_t i = 0; i < nnz; ++i)
          ++bins[static_cast<size_t>(gene * 7 + static_cast<int>(i))];
        histogram::AppendRecord(bins, nnz, &s.hist_data);
      }
      s.hist_end.push_back(s.hist_data.size());
    }
    s.indptr.push_back(static_cast<int64_t>(s.group.size()));
  }
  for (const char* name : {"pos", "neg"}) {
    DatasetRecord r;
    r.name = name;
    r.n_cells = 5 * groups;
    r.n_genes = 3;
    r.measured_genes = {0, 1, 2};
    const bool neg = std::string(name) == "neg";
    r.negative_values = neg ? NegativeValues::kSome : NegativeValues::kNone;
    r.values_above_hist_max = neg ? -1 : 7;
    s.datasets.push_back(r);
  }
  return s;
}

class HistStore : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cellcube-hist-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

std::vector<int64_t> Read(const std::string& path, const char* dataset) {
  auto f = h5ad::File::Open(path);
  EXPECT_TRUE(f.ok()) << f.status().message();
  if (!f.ok()) return {};
  auto v = (*f)->ReadIntegers(dataset);
  EXPECT_TRUE(v.ok()) << v.status().message();
  return v.ok() ? *v : std::vector<int64_t>();
}

TEST_F(HistStore, WrittenArraysMatchTheEntriesAndLoadBack) {
  const StoreData s = TwoDatasets(3);
  ASSERT_TRUE(s.Validate().ok()) << s.Validate().message();
  ASSERT_TRUE(WriteStore(s, Path("h.h5ad")).ok());
  // Offsets counted here, by brute force over the entries.
  const auto entry_offsets = Read(Path("h.h5ad"), store_layout::kEntryOffsets);
  const auto hist_offsets = Read(Path("h.h5ad"), store_layout::kHistOffsets);
  const auto hist_indptr = Read(Path("h.h5ad"), store_layout::kHistIndptr);
  ASSERT_EQ(entry_offsets.size(), 6u);
  ASSERT_EQ(hist_offsets.size(), 6u);
  ASSERT_EQ(hist_indptr.size(), 4u);
  for (int gene = 0; gene < 3; ++gene) {
    const int64_t begin = s.indptr[static_cast<size_t>(gene)];
    const uint64_t gene_bytes = begin == 0 ? 0 : s.hist_end[static_cast<size_t>(begin - 1)];
    EXPECT_EQ(hist_indptr[static_cast<size_t>(gene)], static_cast<int64_t>(gene_bytes));
    for (int d = 0; d < 2; ++d) {
      int64_t k = begin;
      while (k < s.indptr[static_cast<size_t>(gene) + 1] && s.group[static_cast<size_t>(k)] < 3 * d)
        ++k;
      EXPECT_EQ(entry_offsets[static_cast<size_t>(gene * 2 + d)], k - begin);
      const uint64_t at = k == 0 ? 0 : s.hist_end[static_cast<size_t>(k - 1)];
      EXPECT_EQ(hist_offsets[static_cast<size_t>(gene * 2 + d)],
                static_cast<int64_t>(at - gene_bytes));
    }
  }
  EXPECT_EQ(hist_indptr.back(), static_cast<int64_t>(s.hist_data.size()));
  auto loaded = LoadStore(Path("h.h5ad"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->hist_max, s.hist_max);
  EXPECT_EQ(loaded->hist_end, s.hist_end);
  EXPECT_EQ(loaded->hist_data, s.hist_data);
  EXPECT_EQ(loaded->datasets[0].values_above_hist_max, 7);
  EXPECT_EQ(loaded->datasets[1].values_above_hist_max, -1);
}

TEST_F(HistStore, WithoutHistogramsOnlyEntryOffsets) {
  StoreData s = TwoDatasets(2);
  s.hist_max = 0;
  s.hist_end.clear();
  s.hist_data.clear();
  for (auto& d : s.datasets) d.values_above_hist_max = -1;
  ASSERT_TRUE(WriteStore(s, Path("n.h5ad")).ok());
  auto f = h5ad::File::Open(Path("n.h5ad"));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE((*f)->Exists(store_layout::kEntryOffsets));
  EXPECT_FALSE((*f)->Exists(store_layout::kHistData));
  EXPECT_FALSE((*f)->Exists("uns/cellcube/histograms"));
  auto shape = (*f)->ShapeOf(store_layout::kEntryOffsets);
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(*shape, (std::vector<int64_t>{3, 2}));
  auto loaded = LoadStore(Path("n.h5ad"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_FALSE(loaded->has_histograms());
  EXPECT_TRUE(loaded->hist_end.empty());
}

TEST_F(HistStore, ValidateRefusesBrokenRecords) {
  auto refused = [](const StoreData& s, const char* words) {
    Status v = s.Validate();
    EXPECT_FALSE(v.ok()) << words;
    EXPECT_NE(v.message().find(words), std::string::npos) << v.message();
  };
  {  // a count that does not add up to nnz: the first entry (nnz 1, list form) lists 2
    StoreData s = TwoDatasets(3);
    s.hist_data.insert(s.hist_data.begin(), 0);
    for (auto& e : s.hist_end) ++e;
    refused(s, "stray bytes");
  }
  {  // a record in a dataset with negative values
    StoreData s = TwoDatasets(3);
    s.hist_data.push_back(3);
    s.hist_end.back() += 1;
    refused(s, "not binned");
  }
  {  // records in a store without histograms
    StoreData s = TwoDatasets(3);
    s.hist_max = 0;
    for (auto& d : s.datasets) d.values_above_hist_max = -1;
    refused(s, "without histograms");
  }
  {  // a count above H for a store without histograms
    StoreData s = TwoDatasets(3);
    s.hist_max = 0;
    s.hist_end.clear();
    s.hist_data.clear();
    refused(s, "none of its values were binned");
  }
  {  // not one record per entry
    StoreData s = TwoDatasets(3);
    s.hist_end.pop_back();
    refused(s, "one per entry");
  }
  {  // an upper edge that is no layout
    StoreData s = TwoDatasets(3);
    s.hist_max = -1;
    refused(s, "upper edge");
  }
}

// A damaged record on disk is found by LoadStore, naming the entry.
TEST_F(HistStore, DamagedRecordOnDiskIsRefused) {
  const StoreData s = TwoDatasets(3);
  ASSERT_TRUE(WriteStore(s, Path("d.h5ad")).ok());
  uint64_t offset = 0;
  {
    auto f = h5ad::File::Open(Path("d.h5ad"));
    ASSERT_TRUE(f.ok());
    auto e = (*f)->Locate(store_layout::kHistData);
    ASSERT_TRUE(e.ok()) << e.status().message();
    offset = e->offset;
  }
  {  // the first record (list form, one bin) names bin 200
    std::fstream io(Path("d.h5ad"), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(offset));
    const char bad = static_cast<char>(0xff);
    io.write(&bad, 1);
  }
  auto loaded = LoadStore(Path("d.h5ad"));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(loaded.status().message().find("entry 0 of gene 'g0'"), std::string::npos)
      << loaded.status().message();
}

// A writer refuses records that break the rules and leaves no file behind.
TEST_F(HistStore, WriterRefusesWhatValidateRefuses) {
  StoreData s = TwoDatasets(3);
  s.hist_data.push_back(3);
  s.hist_end.back() += 1;
  EXPECT_FALSE(WriteStore(s, Path("w.h5ad")).ok());
  EXPECT_FALSE(std::filesystem::exists(Path("w.h5ad")));
}

}  // namespace
}  // namespace cellcube
