// Writer tests: files written with h5ad::Writer are read back with cellcube's reader.
// (tests/python/test_synth.py checks the same sample file with anndata.)
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "cellcube/h5ad.h"
#include "cellcube/h5ad_writer.h"
#include "writer_sample.h"

namespace cellcube::h5ad {
namespace {

namespace fs = std::filesystem;

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cellcube-writer-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::unique_ptr<File> MustOpen(const std::string& path) {
  auto f = File::Open(path);
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(f).value() : nullptr;
}

// The whole matrix as dense rows, streamed in small blocks.
std::vector<std::vector<double>> ReadDense(const File& f, const std::string& matrix) {
  auto info = f.ResolveMatrix(matrix);
  EXPECT_TRUE(info.ok()) << info.status().message();
  if (!info.ok()) return {};
  std::vector<std::vector<double>> out(static_cast<size_t>(info->n_rows),
                                       std::vector<double>(static_cast<size_t>(info->n_cols), 0));
  StreamOptions opt;
  opt.target_values = 7;
  auto stream = f.StreamMatrix(info->path, opt);
  EXPECT_TRUE(stream.ok()) << stream.status().message();
  if (!stream.ok()) return {};
  SparseBlock block;
  while (true) {
    auto more = (*stream)->Next(&block);
    EXPECT_TRUE(more.ok()) << more.status().message();
    if (!more.ok() || !*more) break;
    for (int64_t m = 0; m < block.major_count; ++m)
      for (int64_t k = block.offsets[m]; k < block.offsets[m + 1]; ++k) {
        auto major = static_cast<size_t>(block.major_begin + m);
        auto minor = static_cast<size_t>(block.minor[k]);
        if ((*stream)->by_rows())
          out[major][minor] = block.values[k];
        else
          out[minor][major] = block.values[k];
      }
  }
  return out;
}

std::vector<std::string> ColumnLabels(const Column& col) {
  std::vector<std::string> out;
  for (int32_t c : col.codes) out.push_back(c < 0 ? "<NA>" : col.labels[static_cast<size_t>(c)]);
  return out;
}

const MatrixInfo* FindMatrix(const File& f, const std::string& path) {
  for (const auto& m : f.matrices())
    if (m.path == path) return &m;
  return nullptr;
}

TEST_F(WriterTest, SampleFileReadsBack) {
  const std::string path = Path("sample.h5ad");
  Status s = cellcube::testing::WriteSampleFile(path);
  ASSERT_TRUE(s.ok()) << s.message();
  auto f = MustOpen(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->layout(), "anndata >= 0.8");
  EXPECT_EQ(f->n_obs(), cellcube::testing::kSampleRows);
  EXPECT_EQ(f->n_vars(), cellcube::testing::kSampleCols);

  const MatrixInfo* x = FindMatrix(*f, "X");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->encoding, Encoding::kCsr);
  EXPECT_EQ(x->dtype, "float32");
  EXPECT_EQ(x->index_dtype, "int32");
  EXPECT_EQ(x->stored, 8);
  EXPECT_EQ(x->filter, "gzip(4)");
  EXPECT_EQ(x->chunks, std::vector<int64_t>({3}));
  const MatrixInfo* counts = FindMatrix(*f, "layers/counts");
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->dtype, "int32");
  EXPECT_EQ(counts->filter, "none");
  EXPECT_TRUE(counts->chunks.empty());  // contiguous
  const MatrixInfo* dense = FindMatrix(*f, "layers/dense");
  ASSERT_TRUE(dense);
  EXPECT_EQ(dense->encoding, Encoding::kDense);
  EXPECT_EQ(dense->dtype, "float64");
  EXPECT_EQ(dense->filter, "gzip(4)");
  EXPECT_EQ(dense->chunks, std::vector<int64_t>({1, 4}));
  const MatrixInfo* empty = FindMatrix(*f, "layers/empty");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->stored, 0);

  auto xd = ReadDense(*f, "X");
  auto cd = ReadDense(*f, "layers/counts");  // indices/indptr are X's, hard-linked
  auto dd = ReadDense(*f, "layers/dense");
  auto ed = ReadDense(*f, "layers/empty");
  ASSERT_EQ(xd.size(), 5u);
  ASSERT_EQ(cd.size(), 5u);
  ASSERT_EQ(dd.size(), 5u);
  ASSERT_EQ(ed.size(), 5u);
  for (size_t r = 0; r < 5; ++r)
    for (size_t c = 0; c < 4; ++c) {
      double want = cellcube::testing::kSampleX[r][c];
      EXPECT_EQ(xd[r][c], want) << r << "," << c;
      EXPECT_EQ(cd[r][c], want * 10) << r << "," << c;
      EXPECT_EQ(dd[r][c], want + 0.5) << r << "," << c;
      EXPECT_EQ(ed[r][c], 0);
    }

  auto obs = f->ObsInfo();
  ASSERT_TRUE(obs.ok());
  EXPECT_EQ(obs->index_name, "_index");
  EXPECT_EQ(obs->column_names, std::vector<std::string>({"cell_type", "stage", "donor", "n_genes",
                                                         "score", "is_doublet", "many"}));
  auto index = f->ReadObsIndex();
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(*index, std::vector<std::string>({"cell0", "cell1", "cell2", "cell3", "cell4"}));

  auto ct = f->ReadObsColumn("cell_type");
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  EXPECT_EQ(ct->kind, ColumnKind::kCategorical);
  EXPECT_FALSE(ct->ordered);
  EXPECT_EQ(ct->labels,
            std::vector<std::string>({"B cell", "CD4-positive, alpha-beta T cell", "NK cell"}));
  EXPECT_EQ(ct->codes, std::vector<int32_t>({1, 0, -1, 2, 1}));
  auto stage = f->ReadObsColumn("stage");
  ASSERT_TRUE(stage.ok());
  EXPECT_TRUE(stage->ordered);
  EXPECT_EQ(ColumnLabels(*stage), std::vector<std::string>({"<NA>", "I", "IV", "IV", "II"}));
  auto donor = f->ReadObsColumn("donor");
  ASSERT_TRUE(donor.ok());
  EXPECT_EQ(donor->kind, ColumnKind::kString);
  EXPECT_EQ(ColumnLabels(*donor), std::vector<std::string>({"D1", "D1", "D2", "D\xc3\xa9", "D3"}));
  auto n_genes = f->ReadObsColumn("n_genes");
  ASSERT_TRUE(n_genes.ok());
  EXPECT_EQ(n_genes->kind, ColumnKind::kInteger);
  EXPECT_EQ(ColumnLabels(*n_genes), std::vector<std::string>({"2", "0", "1", "4", "-1"}));
  auto score = f->ReadObsColumn("score");
  ASSERT_TRUE(score.ok());
  EXPECT_EQ(score->kind, ColumnKind::kFloat);
  EXPECT_EQ(ColumnLabels(*score),
            std::vector<std::string>({"0.5", "<NA>", "-1.25", "10000000000.0", "0.0"}));
  auto flag = f->ReadObsColumn("is_doublet");
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->kind, ColumnKind::kBoolean);
  EXPECT_EQ(ColumnLabels(*flag),
            std::vector<std::string>({"False", "True", "False", "False", "True"}));
  auto many = f->ReadObsColumn("many");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->labels.size(), 200u);
  EXPECT_EQ(ColumnLabels(*many),
            std::vector<std::string>({"c000", "c199", "c057", "c128", "<NA>"}));

  auto var = f->VarInfo();
  ASSERT_TRUE(var.ok());
  EXPECT_TRUE(var->column_names.empty());  // an empty column-order
  auto var_index = f->ReadVarIndex();
  ASSERT_TRUE(var_index.ok());
  EXPECT_EQ(*var_index, std::vector<std::string>({"gene0", "gene1", "gene2", "gene3"}));
}

// Builds a CSR matrix appended in uneven pieces across chunk boundaries, with values
// that compress (small integers) or do not (random bit patterns, stored raw with the
// filter skipped), and reads it back.
void AppendRoundTrip(const std::string& path, int gzip_level, bool incompressible) {
  const int64_t rows = 300, cols = 50;
  std::mt19937_64 rng(42);
  std::vector<std::vector<double>> want(rows, std::vector<double>(cols, 0));
  std::vector<float> data;
  std::vector<int32_t> indices;
  std::vector<int64_t> indptr = {0};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (rng() % 4 != 0) continue;
      float v = 0;
      if (incompressible) {
        uint32_t bits = static_cast<uint32_t>(rng()) & 0x3fffffffu;  // finite, positive
        bits |= 0x00800000u;                                         // not subnormal
        std::memcpy(&v, &bits, 4);
      } else {
        v = static_cast<float>(1 + rng() % 5);
      }
      data.push_back(v);
      indices.push_back(static_cast<int32_t>(c));
      want[static_cast<size_t>(r)][static_cast<size_t>(c)] = v;
    }
    indptr.push_back(static_cast<int64_t>(data.size()));
  }
  auto w = Writer::Create(path);
  ASSERT_TRUE(w.ok()) << w.status().message();
  Writer& writer = **w;
  writer.SetCompressionThreads(3);
  ASSERT_TRUE(writer.CreateGroup("X").ok());
  Compression comp{gzip_level, 64};
  ASSERT_TRUE(writer.CreateAppendable("X/data", ElemType::kFloat32, comp).ok());
  ASSERT_TRUE(writer.CreateAppendable("X/indices", ElemType::kInt32, comp).ok());
  ASSERT_TRUE(writer.CreateAppendable("X/indptr", ElemType::kInt64, {gzip_level, 7}).ok());
  size_t pos = 0, piece = 1;
  while (pos < data.size()) {
    size_t n = std::min(piece, data.size() - pos);
    ASSERT_TRUE(writer.Append("X/data", data.data() + pos, static_cast<int64_t>(n)).ok());
    ASSERT_TRUE(writer.Append("X/indices", indices.data() + pos, static_cast<int64_t>(n)).ok());
    pos += n;
    piece = piece * 3 % 517 + 1;  // 1, 4, 13, 40, 121, 364, 62, ... crossing chunks
  }
  for (size_t i = 0; i < indptr.size(); i += 5) {
    size_t n = std::min<size_t>(5, indptr.size() - i);
    ASSERT_TRUE(writer.Append("X/indptr", indptr.data() + i, static_cast<int64_t>(n)).ok());
  }
  ASSERT_TRUE(writer.MarkSparse("X", true, rows, cols).ok());
  std::vector<std::string> obs(rows), var(cols);
  for (int64_t i = 0; i < rows; ++i) obs[static_cast<size_t>(i)] = std::to_string(i) + "c";
  for (int64_t i = 0; i < cols; ++i) var[static_cast<size_t>(i)] = std::to_string(i) + "g";
  ASSERT_TRUE(writer.WriteDataFrame("obs", obs, {}).ok());
  ASSERT_TRUE(writer.WriteDataFrame("var", var, {}).ok());
  Status closed = writer.Close();
  ASSERT_TRUE(closed.ok()) << closed.message();

  auto f = MustOpen(path);
  ASSERT_TRUE(f);
  const MatrixInfo* x = FindMatrix(*f, "X");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->stored, static_cast<int64_t>(data.size()));
  EXPECT_EQ(x->chunks, std::vector<int64_t>({64}));
  EXPECT_EQ(x->filter, gzip_level > 0 ? "gzip(" + std::to_string(gzip_level) + ")" : "none");
  EXPECT_EQ(ReadDense(*f, "X"), want);
}

TEST_F(WriterTest, AppendGzipAcrossChunks) { AppendRoundTrip(Path("a.h5ad"), 4, false); }
TEST_F(WriterTest, AppendIncompressibleChunksStoredRaw) {
  AppendRoundTrip(Path("b.h5ad"), 9, true);
}
TEST_F(WriterTest, AppendUncompressed) { AppendRoundTrip(Path("c.h5ad"), 0, false); }

TEST_F(WriterTest, EmptyAppendableAndEmptyMatrix) {
  const std::string path = Path("empty.h5ad");
  {
    auto w = Writer::Create(path);
    ASSERT_TRUE(w.ok());
    Writer& writer = **w;
    ASSERT_TRUE(writer.CreateGroup("X").ok());
    ASSERT_TRUE(writer.CreateAppendable("X/data", ElemType::kFloat32, {4, 1024}).ok());
    ASSERT_TRUE(writer.CreateAppendable("X/indices", ElemType::kInt32, {4, 1024}).ok());
    ASSERT_TRUE(writer.Append("X/data", nullptr, 0).ok());
    std::vector<int32_t> indptr(4, 0);
    ASSERT_TRUE(writer.WriteArray("X/indptr", ElemType::kInt32, indptr.data(), {4}).ok());
    ASSERT_TRUE(writer.MarkSparse("X", true, 3, 2).ok());
    ASSERT_TRUE(writer.WriteDataFrame("obs", {"a", "b", "c"}, {}).ok());
    ASSERT_TRUE(writer.WriteDataFrame("var", {"x", "y"}, {}).ok());
    ASSERT_TRUE(writer.Close().ok());
  }
  auto f = MustOpen(path);
  ASSERT_TRUE(f);
  const MatrixInfo* x = FindMatrix(*f, "X");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->stored, 0);
  EXPECT_EQ(ReadDense(*f, "X"), std::vector<std::vector<double>>(3, std::vector<double>(2, 0)));
}

TEST_F(WriterTest, CreateTruncatesAnExistingFile) {
  const std::string path = Path("old.h5ad");
  { std::ofstream(path) << "not an HDF5 file at all"; }
  auto w = Writer::Create(path);
  ASSERT_TRUE(w.ok()) << w.status().message();
  ASSERT_TRUE((*w)->WriteDataFrame("obs", {}, {}).ok());
  ASSERT_TRUE((*w)->WriteDataFrame("var", {}, {}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  auto f = MustOpen(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->n_obs(), 0);
  EXPECT_TRUE(f->matrices().empty());
}

TEST_F(WriterTest, DestructorFlushesWithoutClose) {
  const std::string path = Path("noclose.h5ad");
  {
    auto w = Writer::Create(path);
    ASSERT_TRUE(w.ok());
    Writer& writer = **w;
    ASSERT_TRUE(writer.CreateGroup("X").ok());
    ASSERT_TRUE(writer.CreateAppendable("X/data", ElemType::kFloat32, {4, 100}).ok());
    ASSERT_TRUE(writer.CreateAppendable("X/indices", ElemType::kInt32, {4, 100}).ok());
    float d[2] = {1, 2};
    int32_t i[2] = {0, 1};
    int32_t p[2] = {0, 2};
    ASSERT_TRUE(writer.Append("X/data", d, 2).ok());
    ASSERT_TRUE(writer.Append("X/indices", i, 2).ok());
    ASSERT_TRUE(writer.WriteArray("X/indptr", ElemType::kInt32, p, {2}).ok());
    ASSERT_TRUE(writer.MarkSparse("X", true, 1, 2).ok());
    ASSERT_TRUE(writer.WriteDataFrame("obs", {"a"}, {}).ok());
    ASSERT_TRUE(writer.WriteDataFrame("var", {"x", "y"}, {}).ok());
  }
  auto f = MustOpen(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(ReadDense(*f, "X"), std::vector<std::vector<double>>({{1, 2}}));
}

TEST_F(WriterTest, ErrorsAreOneClearLine) {
  auto missing = Writer::Create(Path("no/such/dir/x.h5ad"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_NE(missing.status().message().find("no/such/dir/x.h5ad"), std::string::npos);
  EXPECT_NE(missing.status().message().find("No such file or directory"), std::string::npos)
      << missing.status().message();

  const std::string path = Path("err.h5ad");
  auto w = Writer::Create(path);
  ASSERT_TRUE(w.ok());
  Writer& writer = **w;
  ASSERT_TRUE(writer.CreateGroup("g").ok());
  auto expect_invalid = [&](const Status& s, const std::string& mention) {
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
    EXPECT_NE(s.message().find(mention), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  };
  expect_invalid(writer.CreateGroup("g"), "already exists");
  expect_invalid(writer.CreateGroup("a/b"), "no group 'a'");
  expect_invalid(writer.Append("g/nothing", nullptr, 0), "CreateAppendable");
  expect_invalid(writer.CreateAppendable("g/d", ElemType::kInt32, {0, 0}), "chunk_elements");
  expect_invalid(writer.WriteArray("g/z", ElemType::kInt32, nullptr, {3}), "no data");
  expect_invalid(writer.WriteArray("g/z", ElemType::kInt32, nullptr, {-1}), "bad shape");
  int32_t v[2] = {1, 2};
  expect_invalid(writer.WriteArray("g/z", ElemType::kInt32, v, {2}, {4, 0}), "chunk_elements");
  expect_invalid(writer.WriteArray("g/z", ElemType::kInt32, v, {2}, {12, 4}), "gzip level");
  expect_invalid(writer.SetStringAttr("nowhere", "a", "b"), "no object 'nowhere'");
  expect_invalid(writer.HardLink("nowhere", "g/x"), "cannot link");
  expect_invalid(writer.MarkSparse("nowhere", true, 1, 1), "not a group");
  ColumnData bad;
  bad.name = "ct";
  bad.type = ColumnData::Type::kCategorical;
  bad.labels = {"a", "b"};
  bad.codes = {0, 2};
  expect_invalid(writer.WriteColumn("g", bad), "code 2");
  bad.codes = {0, 1};
  bad.labels = {"a", "a"};
  expect_invalid(writer.WriteColumn("g", bad), "duplicate categories");
  ColumnData shortcol;
  shortcol.name = "n";
  shortcol.type = ColumnData::Type::kInt64;
  shortcol.ints = {1};
  expect_invalid(writer.WriteDataFrame("df", {"r1", "r2"}, {shortcol}), "has 1 rows");
  shortcol.name = "_index";
  expect_invalid(writer.WriteDataFrame("df", {"r1"}, {shortcol}), "'_index' cannot be");
  expect_invalid(writer.WriteStrings("g/s", {std::string("a\0b", 3)}), "NUL");
  ASSERT_TRUE(writer.Close().ok());
  Status after = writer.CreateGroup("h");
  EXPECT_FALSE(after.ok());
  EXPECT_NE(after.message().find("closed"), std::string::npos);
}

// A write that fails half-way (here: over the file size limit, as on a full disk) is
// reported with the path by that call, by every later call and by Close; the writer
// still closes the file cleanly (HDF5 1.10 would crash at exit on a half-closed file)
// and HDF5 keeps working.
TEST_F(WriterTest, WriteFailureIsReportedAndTheFileStillCloses) {
  const std::string path = Path("too_big.h5ad");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 1 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  Status first, later, closed;
  {
    auto w = Writer::Create(path);
    if (w.ok()) {
      Writer& writer = **w;
      first = writer.CreateAppendable("data", ElemType::kFloat32, {0, 1 << 16});
      std::vector<float> values(1 << 16, 1.5f);
      for (int i = 0; i < 64 && first.ok(); ++i)
        first = writer.Append("data", values.data(), static_cast<int64_t>(values.size()));
      later = writer.CreateGroup("g");
      closed = writer.Close();
    } else {
      first = w.status();
    }
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, saved_handler);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.code(), StatusCode::kIoError);
  EXPECT_NE(first.message().find(path), std::string::npos) << first.message();
  EXPECT_NE(first.message().find("File too large"), std::string::npos) << first.message();
  EXPECT_EQ(later.message(), first.message());
  EXPECT_EQ(closed.message(), first.message());
  // HDF5 is fine afterwards.
  ASSERT_TRUE(cellcube::testing::WriteSampleFile(Path("after.h5ad")).ok());
  EXPECT_TRUE(MustOpen(Path("after.h5ad")));
}

TEST_F(WriterTest, DiskFullIsReportedWithThePath) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto w = Writer::Create("/dev/full");
  Status s = w.ok() ? Status::Ok() : w.status();
  if (w.ok()) {
    std::vector<float> big(1 << 20, 1.0f);
    Status a = (*w)->WriteArray("big", ElemType::kFloat32, big.data(), {1 << 20});
    Status c = (*w)->Close();
    s = a.ok() ? c : a;
  }
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/dev/full"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("No space left on device"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace cellcube::h5ad
