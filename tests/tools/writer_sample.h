// A small .h5ad that uses every feature of h5ad::Writer. The writer's unit test reads
// it back with cellcube's reader; cellcube-write-sample writes it for the Python suite,
// which reads it with anndata (tests/python/test_synth.py keeps the same values).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cellcube/h5ad_writer.h"

namespace cellcube::testing {

inline constexpr int64_t kSampleRows = 5;
inline constexpr int64_t kSampleCols = 4;

// X as a dense matrix; stored as CSR.
inline const float kSampleX[kSampleRows][kSampleCols] = {
    {1, 0, 0, 2}, {0, 0, 0, 0}, {0, 3, 0, 0}, {4, 5, 6, 7}, {0, 0, 8, 0}};

inline std::vector<std::string> SampleManyCategories() {
  std::vector<std::string> out;
  for (int i = 0; i < 200; ++i) {
    std::string label = std::to_string(1000 + i);  // "c000" ... "c199"
    label[0] = 'c';
    out.push_back(label);
  }
  return out;
}

inline std::vector<h5ad::ColumnData> SampleObsColumns() {
  using h5ad::ColumnData;
  std::vector<ColumnData> cols(7);
  cols[0].name = "cell_type";
  cols[0].type = ColumnData::Type::kCategorical;
  cols[0].labels = {"B cell", "CD4-positive, alpha-beta T cell", "NK cell"};
  cols[0].codes = {1, 0, -1, 2, 1};
  cols[1].name = "stage";
  cols[1].type = ColumnData::Type::kCategorical;
  cols[1].labels = {"I", "II", "III", "IV"};
  cols[1].codes = {-1, 0, 3, 3, 1};
  cols[1].ordered = true;
  cols[2].name = "donor";
  cols[2].type = ColumnData::Type::kStrings;
  cols[2].labels = {"D1", "D1", "D2", "D\xc3\xa9", "D3"};  // "Dé": UTF-8
  cols[3].name = "n_genes";
  cols[3].type = ColumnData::Type::kInt64;
  cols[3].ints = {2, 0, 1, 4, -1};
  cols[4].name = "score";
  cols[4].type = ColumnData::Type::kFloat64;
  cols[4].floats = {0.5, std::numeric_limits<double>::quiet_NaN(), -1.25, 1e10, 0};
  cols[5].name = "is_doublet";
  cols[5].type = ColumnData::Type::kBool;
  cols[5].ints = {0, 1, 0, 0, 1};
  cols[6].name = "many";  // 200 categories: int16 codes
  cols[6].type = ColumnData::Type::kCategorical;
  cols[6].labels = SampleManyCategories();
  cols[6].codes = {0, 199, 57, 128, -1};
  return cols;
}

// Writes the sample to `path`:
//   X             CSR float32: data appended in uneven pieces (gzip, 3-element chunks),
//                 indices appended uncompressed, indptr int64 contiguous
//   layers/counts CSR int32 data (contiguous); indices and indptr hard links to X's
//   layers/dense  dense float64 = X + 0.5, gzip-chunked 2-D array
//   layers/empty  CSR with no stored values (zero-size arrays)
//   obs           every column type (see SampleObsColumns); var with no columns
//   obsm/X_pca    2-D float32; uns: scalar string, string array, empty array
inline Status WriteSampleFile(const std::string& path) {
  using h5ad::Compression;
  using h5ad::ElemType;
  CC_ASSIGN_OR_RETURN(auto w, h5ad::Writer::Create(path));
  std::vector<float> data;
  std::vector<int32_t> indices;
  std::vector<int64_t> indptr = {0};
  for (int64_t r = 0; r < kSampleRows; ++r) {
    for (int64_t c = 0; c < kSampleCols; ++c) {
      if (kSampleX[r][c] == 0) continue;
      data.push_back(kSampleX[r][c]);
      indices.push_back(static_cast<int32_t>(c));
    }
    indptr.push_back(static_cast<int64_t>(data.size()));
  }
  CC_RETURN_IF_ERROR(w->CreateGroup("X"));
  CC_RETURN_IF_ERROR(w->CreateAppendable("X/data", ElemType::kFloat32, {4, 3}));
  CC_RETURN_IF_ERROR(w->CreateAppendable("X/indices", ElemType::kInt32, {0, 3}));
  size_t pos = 0;
  for (size_t piece : {2, 1, 0, 4, 1}) {
    CC_RETURN_IF_ERROR(w->Append("X/data", data.data() + pos, static_cast<int64_t>(piece)));
    CC_RETURN_IF_ERROR(w->Append("/X/indices", indices.data() + pos, static_cast<int64_t>(piece)));
    pos += piece;
  }
  CC_RETURN_IF_ERROR(w->WriteArray("X/indptr", ElemType::kInt64, indptr.data(),
                                   {static_cast<int64_t>(indptr.size())}));
  CC_RETURN_IF_ERROR(w->MarkSparse("X", true, kSampleRows, kSampleCols));

  CC_RETURN_IF_ERROR(w->CreateGroup("layers", "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w->CreateGroup("layers/counts"));
  std::vector<int32_t> counts;
  for (float v : data) counts.push_back(static_cast<int32_t>(v * 10));
  CC_RETURN_IF_ERROR(w->WriteArray("layers/counts/data", ElemType::kInt32, counts.data(),
                                   {static_cast<int64_t>(counts.size())}));
  CC_RETURN_IF_ERROR(w->HardLink("X/indices", "layers/counts/indices"));
  CC_RETURN_IF_ERROR(w->HardLink("/X/indptr", "layers/counts/indptr"));
  CC_RETURN_IF_ERROR(w->MarkSparse("layers/counts", true, kSampleRows, kSampleCols));

  std::vector<double> dense;
  for (int64_t r = 0; r < kSampleRows; ++r)
    for (int64_t c = 0; c < kSampleCols; ++c) dense.push_back(kSampleX[r][c] + 0.5);
  CC_RETURN_IF_ERROR(w->WriteArray("layers/dense", ElemType::kFloat64, dense.data(),
                                   {kSampleRows, kSampleCols}, {4, 6}));

  CC_RETURN_IF_ERROR(w->CreateGroup("layers/empty"));
  std::vector<int32_t> zeros(kSampleRows + 1, 0);
  CC_RETURN_IF_ERROR(w->WriteArray("layers/empty/data", ElemType::kFloat32, nullptr, {0}));
  CC_RETURN_IF_ERROR(w->WriteArray("layers/empty/indices", ElemType::kInt32, nullptr, {0}, {4, 8}));
  CC_RETURN_IF_ERROR(
      w->WriteArray("layers/empty/indptr", ElemType::kInt32, zeros.data(), {kSampleRows + 1}));
  CC_RETURN_IF_ERROR(w->MarkSparse("layers/empty", true, kSampleRows, kSampleCols));

  std::vector<std::string> obs_names, var_names;
  for (int64_t r = 0; r < kSampleRows; ++r) obs_names.push_back("cell" + std::to_string(r));
  for (int64_t c = 0; c < kSampleCols; ++c) var_names.push_back("gene" + std::to_string(c));
  CC_RETURN_IF_ERROR(w->WriteDataFrame("obs", obs_names, SampleObsColumns()));
  CC_RETURN_IF_ERROR(w->WriteDataFrame("var", var_names, {}));

  CC_RETURN_IF_ERROR(w->CreateGroup("obsm", "dict", "0.1.0"));
  std::vector<float> pca;
  for (int64_t i = 0; i < kSampleRows * 2; ++i) pca.push_back(static_cast<float>(i) * 0.25f);
  CC_RETURN_IF_ERROR(w->WriteArray("obsm/X_pca", ElemType::kFloat32, pca.data(), {kSampleRows, 2}));
  for (const char* g : {"varm", "obsp", "varp"})
    CC_RETURN_IF_ERROR(w->CreateGroup(g, "dict", "0.1.0"));

  CC_RETURN_IF_ERROR(w->CreateGroup("uns", "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w->WriteScalarString("uns/title",
                                          "cellcube writer sample \xc3\xbcnic\xc3\xb8"
                                          "de"));
  CC_RETURN_IF_ERROR(w->WriteStrings("uns/tags", {"alpha", "beta"}));
  CC_RETURN_IF_ERROR(w->WriteStrings("uns/no_tags", {}));
  CC_RETURN_IF_ERROR(w->WriteArray("uns/nothing", ElemType::kFloat64, nullptr, {0}));
  CC_RETURN_IF_ERROR(w->SetStringAttr("/", "note", "root attribute"));
  return w->Close();
}

}  // namespace cellcube::testing
