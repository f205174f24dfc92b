// Reader tests on the real files in ../shared/data/h5ad. The Python suite compares
// every value with h5py/anndata; these check the C++ API's contracts directly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cellcube/h5ad.h"

namespace cellcube::h5ad {
namespace {

std::string Data(const std::string& name) { return std::string(CELLCUBE_SHARED_DATA) + "/" + name; }

std::unique_ptr<File> MustOpen(const std::string& name) {
  auto f = File::Open(Data(name));
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(f).value() : nullptr;
}

// Sums every stored value through the stream, checking block invariants.
double StreamSum(const File& file, const std::string& matrix, int64_t target, int64_t* n_major) {
  StreamOptions opt;
  opt.target_values = target;
  auto stream = file.StreamMatrix(matrix, opt);
  EXPECT_TRUE(stream.ok()) << stream.status().message();
  SparseBlock block;
  double sum = 0;
  int64_t expect_begin = 0;
  while (true) {
    auto more = (*stream)->Next(&block);
    EXPECT_TRUE(more.ok()) << more.status().message();
    if (!more.ok() || !*more) break;
    EXPECT_EQ(block.major_begin, expect_begin);
    EXPECT_EQ(block.offsets.size(), static_cast<size_t>(block.major_count + 1));
    EXPECT_EQ(block.offsets.back(), static_cast<int64_t>(block.values.size()));
    expect_begin += block.major_count;
    for (double v : block.values) sum += v;
  }
  *n_major = expect_begin;
  return sum;
}

TEST(Reader, LzfCompressedMatrixDecodesWithoutPlugin) {
  auto f = MustOpen("anndata-0.7_scvi-pbmc10k-protein_dense-lzf.h5ad");
  ASSERT_TRUE(f);
  auto x = f->ResolveMatrix("X");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->filter, "lzf");
  int64_t rows = 0;
  double a = StreamSum(*f, "X", 1 << 20, &rows);
  EXPECT_EQ(rows, f->n_obs());
  EXPECT_GT(a, 0);
  // Block size must not change the answer.
  int64_t rows2 = 0;
  EXPECT_DOUBLE_EQ(StreamSum(*f, "X", 100, &rows2), a);
}

TEST(Reader, CscStreamsByColumns) {
  auto f = MustOpen("anndata-0.8_pbmc-small_X-csc-f64.h5ad");
  ASSERT_TRUE(f);
  auto stream = f->StreamMatrix("X");
  ASSERT_TRUE(stream.ok());
  EXPECT_FALSE((*stream)->by_rows());
  int64_t cols = 0;
  StreamSum(*f, "X", 50, &cols);
  EXPECT_EQ(cols, f->n_vars());
}

TEST(Reader, AutoMatrixPrefersRaw) {
  auto f = MustOpen("anndata-0.6_pbmc68k-reduced_dense-gzip_legacy-raw.h5ad");
  ASSERT_TRUE(f);
  auto m = f->ResolveMatrix("auto");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->path, "raw.X");
  EXPECT_EQ(f->layout(), "anndata 0.6 (legacy)");
  auto raw = f->ResolveMatrix("raw");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->encoding, Encoding::kCsr);
}

TEST(Reader, LegacyCategoricalsComeFromUns) {
  auto f = MustOpen("anndata-0.6_pbmc68k-reduced_dense-gzip_legacy-raw.h5ad");
  ASSERT_TRUE(f);
  auto col = f->ReadObsColumn("louvain");
  ASSERT_TRUE(col.ok()) << col.status().message();
  EXPECT_EQ(col->kind, ColumnKind::kCategorical);
  // The labels are uns/louvain_categories, in its order (anndata 0.6 keeps the codes in
  // obs and the categories there), and the codes index them: every label has cells.
  auto uns = f->ReadStrings("uns/louvain_categories");
  ASSERT_TRUE(uns.ok()) << uns.status().message();
  EXPECT_EQ(col->labels, *uns);
  ASSERT_EQ(col->codes.size(), static_cast<size_t>(f->n_obs()));
  std::vector<int> cells(col->labels.size(), 0);
  for (int32_t code : col->codes) {
    ASSERT_TRUE(code >= 0 && code < static_cast<int32_t>(cells.size())) << code;
    ++cells[static_cast<size_t>(code)];
  }
  for (size_t l = 0; l < cells.size(); ++l) EXPECT_GT(cells[l], 0) << col->labels[l];
}

TEST(Reader, Anndata07CategoricalsFollowObjectReferences) {
  auto f = MustOpen("anndata-0.7.8_archive_csr-lzf_raw.h5ad");
  ASSERT_TRUE(f);
  auto info = f->ObsInfo();
  ASSERT_TRUE(info.ok());
  bool found_ordered = false;
  for (const auto& name : info->column_names) {
    auto col = f->ReadObsColumn(name);
    ASSERT_TRUE(col.ok()) << name << ": " << col.status().message();
    if (col->ordered) found_ordered = true;
  }
  EXPECT_TRUE(found_ordered);
}

TEST(Reader, MissingCategoricalCodesAreMissing) {
  auto f = MustOpen("anndata-0.8plus_soma-categorical-int-nan.h5ad");
  ASSERT_TRUE(f);
  auto col = f->ReadObsColumn("categ_int_nan");
  ASSERT_TRUE(col.ok());
  EXPECT_GT(col->CountMissing(), 0);
}

TEST(Reader, FileWithoutXHasNoMatrix) {
  auto f = MustOpen("anndata-0.11.4_archive_empty-noX.h5ad");
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->matrices().empty());
  auto m = f->ResolveMatrix("auto");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("has no matrix"), std::string::npos);
}

TEST(Reader, UnknownColumnSuggestsNearNames) {
  auto f = MustOpen("anndata-0.8plus_moscot-temporal_csr_float64-categories.h5ad");
  ASSERT_TRUE(f);
  auto col = f->ReadObsColumn("cell_typ");
  ASSERT_FALSE(col.ok());
  EXPECT_EQ(col.status().code(), StatusCode::kNotFound);
  EXPECT_NE(col.status().message().find("did you mean 'cell_type'"), std::string::npos);
  auto day = f->ReadObsColumn("day");
  ASSERT_TRUE(day.ok());
  EXPECT_EQ(day->labels.at(0).back(), '0');  // float categories print like Python: "11.0"
}

TEST(Reader, OpenErrorsAreClear) {
  auto missing = File::Open("/nonexistent/file.h5ad");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no such file"), std::string::npos);
  auto dir = File::Open(CELLCUBE_SHARED_DATA);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("is a directory"), std::string::npos);
  auto text = File::Open(Data("SOURCES.md"));
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("not an HDF5 file"), std::string::npos);
}

TEST(Reader, EveryRealFileOpens) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(CELLCUBE_SHARED_DATA)) {
    if (e.path().extension() != ".h5ad") continue;
    auto f = File::Open(e.path().string());
    EXPECT_TRUE(f.ok()) << e.path() << ": " << f.status().message();
    ++n;
  }
  EXPECT_GE(n, 30);
}

}  // namespace
}  // namespace cellcube::h5ad
