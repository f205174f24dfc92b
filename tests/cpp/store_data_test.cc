#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <iterator>

#include <fstream>

#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "store/store_arrays.h"

namespace cellcube {
namespace {

// A one-dataset store: groups = cell types, `genes` measured, entry value = gene index + 1.
StoreData OneDataset(const std::string& name, const std::vector<std::string>& types,
                     const std::vector<std::string>& genes, const std::string& extra_column = "") {
  StoreData s;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{name}, types};
  s.codes = {std::vector<int32_t>(types.size(), 0), {}};
  for (size_t t = 0; t < types.size(); ++t) s.codes[1].push_back(static_cast<int32_t>(t));
  if (!extra_column.empty()) {
    s.columns.push_back(extra_column);
    s.labels.push_back({"x"});
    s.codes.push_back(std::vector<int32_t>(types.size(), 0));
  }
  s.n_cells.assign(types.size(), 10);
  s.gene_ids = genes;
  s.gene_symbols.assign(genes.size(), "");
  s.indptr = {0};
  for (size_t g = 0; g < genes.size(); ++g) {
    for (size_t t = 0; t < types.size(); ++t) {
      s.group.push_back(static_cast<int32_t>(t));
      s.nnz.push_back(static_cast<uint32_t>(g + 1));
      s.sum.push_back(static_cast<float>(g + 1));
      s.m2.push_back(static_cast<float>((g + 1) * (g + 1)));
    }
    s.indptr.push_back(static_cast<int64_t>(s.group.size()));
  }
  DatasetRecord r;
  r.name = name;
  r.n_cells = 10 * static_cast<int64_t>(types.size());
  for (size_t g = 0; g < genes.size(); ++g) r.measured_genes.push_back(static_cast<int32_t>(g));
  r.n_genes = static_cast<int64_t>(genes.size());
  s.datasets.push_back(r);
  return s;
}

// A scratch directory, removed with its files.
class StoreFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cellcube-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const StoreData& s, const std::string& name) {
    const std::string path = dir_ + "/" + name;
    Status w = WriteStore(s, path);
    EXPECT_TRUE(w.ok()) << w.message();
    return path;
  }
  StoreData Load(const std::string& path) {
    auto s = LoadStore(path);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? *s : StoreData();
  }
  std::string dir_;
};

// store_arrays.h, the one locator of both store readers: what it finds in a store as
// cellcube writes it, and what it refuses.
TEST_F(StoreFiles, OneLocatorFindsTheEntryArraysAsWritten) {
  const StoreData s = OneDataset("a", {"T", "B", "NK"}, {"g1", "g2", "g3", "g4"});
  const std::string path = Write(s, "arrays.h5ad");
  const auto size = static_cast<uint64_t>(std::filesystem::file_size(path));
  auto file = h5ad::File::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  auto a = LocateStoreArrays(**file, 2, 4, 1, false, size);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->n_entries, 12);
  const struct {
    const LocatedArray* array;
    ArrayType type;
    int64_t elements;
  } want[] = {{&a->indptr, ArrayType::kInt32, 5},
              {&a->indices, ArrayType::kInt32, 12},
              {&a->nnz, ArrayType::kUInt16, 12},
              {&a->sum, ArrayType::kFloat64, 12},
              {&a->second, ArrayType::kFloat32, 12}};
  for (const auto& w : want) {
    EXPECT_EQ(w.array->type, w.type) << w.array->path;
    EXPECT_EQ(w.array->elements, w.elements) << w.array->path;
    EXPECT_TRUE(w.array->in_place) << w.array->path;
    EXPECT_LE(w.array->offset + w.array->bytes(), size) << w.array->path;
  }
  EXPECT_EQ(a->sum.path, "layers/sum/data");
  // ReadWhole gives the values the file holds where the locator says.
  auto words = ReadWhole(**file, a->sum);
  ASSERT_TRUE(words.ok()) << words.status().message();
  std::ifstream in(path, std::ios::binary);
  std::vector<double> in_place(12);
  in.seekg(static_cast<std::streamoff>(a->sum.offset));
  in.read(reinterpret_cast<char*>(in_place.data()), 12 * sizeof(double));
  ASSERT_TRUE(in.good());
  EXPECT_EQ(std::memcmp(words->data(), in_place.data(), 12 * sizeof(double)), 0);
  EXPECT_EQ(in_place[11], 4.0);  // gene 4's entry of the last group
  // Refused: a gene count indptr does not match, and a file too short for an array.
  auto wrong = LocateStoreArrays(**file, 2, 5, 1, false, size);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(wrong.status().message().find("indptr"), std::string::npos);
  auto cut = LocateStoreArrays(**file, 2, 4, 1, false, a->sum.offset + 8);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("lies outside the file"), std::string::npos)
      << cut.status().message();
  // Format 1 wants a uint32 nnz layer: this store's uint16 one is refused, named.
  auto v1 = LocateStoreArrays(**file, 1, 4, 1, false, size);
  ASSERT_FALSE(v1.ok());
  EXPECT_NE(v1.status().message().find("uint16"), std::string::npos) << v1.status().message();
}

TEST_F(StoreFiles, MergeUnitesGenesAndColumns) {
  StoreData a = OneDataset("a", {"T", "B"}, {"G1", "G2"});
  StoreData b = OneDataset("b", {"B", "NK"}, {"G2", "G3"}, "stage");
  ASSERT_TRUE(a.Validate().ok());
  const std::string out = dir_ + "/c.h5ad";
  auto summary =
      MergeStoreFiles({Write(a, "a.h5ad"), Write(b, "b.h5ad")}, out, kDefaultMemoryLimit, {});
  ASSERT_TRUE(summary.ok()) << summary.status().message();
  EXPECT_EQ(summary->entries, 8);
  StoreData c = Load(out);
  ASSERT_TRUE(c.Validate().ok()) << c.Validate().message();
  EXPECT_EQ(c.gene_ids, (std::vector<std::string>{"G1", "G2", "G3"}));
  EXPECT_EQ(c.labels[1], (std::vector<std::string>{"T", "B", "NK"}));
  EXPECT_EQ(c.columns.back(), "stage");
  EXPECT_EQ(c.codes[2], (std::vector<int32_t>{-1, -1, 0, 0}));  // a lacks the column: NA
  // G2: a's groups 0,1 then b's groups 2,3.
  EXPECT_EQ(c.indptr[2] - c.indptr[1], 4);
  EXPECT_EQ(c.group, (std::vector<int32_t>{0, 1, 0, 1, 2, 3, 2, 3}));
  EXPECT_EQ(c.sum, (std::vector<double>{1, 1, 2, 2, 1, 1, 2, 2}));
  EXPECT_EQ(c.datasets[1].measured_genes, (std::vector<int32_t>{1, 2}));
}

TEST_F(StoreFiles, MergeReordersGenesOfLaterStores) {
  // b lists its genes in another order than the union: its runs are read out of order.
  StoreData a = OneDataset("a", {"T"}, {"G1", "G2", "G3"});
  StoreData b = OneDataset("b", {"B"}, {"G3", "G1"});
  const std::string out = dir_ + "/c.h5ad";
  auto summary =
      MergeStoreFiles({Write(a, "a.h5ad"), Write(b, "b.h5ad")}, out, kDefaultMemoryLimit, {});
  ASSERT_TRUE(summary.ok()) << summary.status().message();
  StoreData c = Load(out);
  EXPECT_EQ(c.indptr, (std::vector<int64_t>{0, 2, 3, 5}));
  // G1: a (1) and b's second gene (2); G3: a (3) and b's first gene (1).
  EXPECT_EQ(c.sum, (std::vector<double>{1, 2, 2, 3, 1}));
  EXPECT_EQ(c.group, (std::vector<int32_t>{0, 1, 0, 0, 1}));
}

TEST_F(StoreFiles, MergeRefusesOverlappingDatasets) {
  StoreData a = OneDataset("a", {"T"}, {"G1"});
  const std::string path = Write(a, "a.h5ad");
  const std::string out = dir_ + "/c.h5ad";
  auto c = MergeStoreFiles({path, path}, out, kDefaultMemoryLimit, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'a'"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out));
  // Nothing but the input is left in the directory.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 1);
}

TEST_F(StoreFiles, RemoveUndoesMerge) {
  StoreData a = OneDataset("a", {"T", "B"}, {"G1", "G2"});
  StoreData b = OneDataset("b", {"B", "NK"}, {"G2", "G3"}, "stage");
  const std::string c = dir_ + "/c.h5ad";
  ASSERT_TRUE(
      MergeStoreFiles({Write(a, "a.h5ad"), Write(b, "b.h5ad")}, c, kDefaultMemoryLimit, {}).ok());
  auto unknown = RemoveFromStoreFile(c, {"bb"}, kDefaultMemoryLimit, {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("did you mean 'b'"), std::string::npos);
  auto removed = RemoveFromStoreFile(c, {"b"}, kDefaultMemoryLimit, {});
  ASSERT_TRUE(removed.ok()) << removed.status().message();
  StoreData back = Load(c);
  ASSERT_TRUE(back.Validate().ok());
  EXPECT_EQ(back.columns, a.columns);
  EXPECT_EQ(back.labels, a.labels);
  EXPECT_EQ(back.codes, a.codes);
  EXPECT_EQ(back.gene_ids, a.gene_ids);
  EXPECT_EQ(back.indptr, a.indptr);
  EXPECT_EQ(back.group, a.group);
  EXPECT_EQ(back.sum, a.sum);
}

TEST(StoreData, ValidateCatchesBrokenInvariants) {
  StoreData a = OneDataset("a", {"T", "B"}, {"G1", "G2"});
  StoreData bad = a;
  bad.group[1] = 7;
  EXPECT_FALSE(bad.Validate().ok());
  bad = a;
  bad.indptr[1] = 5;
  EXPECT_FALSE(bad.Validate().ok());
  bad = a;
  bad.datasets[0].measured_genes = {0};  // entries in G2, which it did not measure
  EXPECT_FALSE(bad.Validate().ok());
  bad = a;
  bad.nnz[0] = 11;  // more expressing cells than cells
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace cellcube
