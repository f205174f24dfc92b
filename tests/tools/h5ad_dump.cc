// Test tool: streams one matrix of an .h5ad file through the reader and prints row
// and column checksums plus every obs/var label as JSON, for comparison with an
// independent reader (h5py/anndata) in tests/python.
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cellcube/h5ad.h"

using cellcube::Status;
using nlohmann::json;
namespace h5ad = cellcube::h5ad;

namespace {

json Labels(const h5ad::Column& col) {
  json out = json::array();
  for (int32_t c : col.codes)
    out.push_back(c < 0 ? json(nullptr) : json(col.labels[static_cast<size_t>(c)]));
  return out;
}

template <typename ReadIndex, typename ReadColumn>
cellcube::Result<json> Frame(const h5ad::DataFrameInfo& info, ReadIndex read_index,
                             ReadColumn read_column) {
  json out;
  CC_ASSIGN_OR_RETURN(out["index"], read_index());
  out["columns"] = json::object();
  for (const auto& name : info.column_names) {
    CC_ASSIGN_OR_RETURN(h5ad::Column col, read_column(name));
    out["columns"][name] = Labels(col);
  }
  return out;
}

json Numbers(const std::vector<double>& v) {
  json out = json::array();
  for (double x : v) out.push_back(std::isnan(x) ? json(nullptr) : json(x));
  return out;
}

Status Dump(const std::string& path, const std::string& matrix) {
  CC_ASSIGN_OR_RETURN(auto file, h5ad::File::Open(path));
  CC_ASSIGN_OR_RETURN(h5ad::MatrixInfo info, file->ResolveMatrix(matrix));
  h5ad::StreamOptions options;
  options.target_values = 1000;  // many small blocks: exercises block boundaries
  CC_ASSIGN_OR_RETURN(auto stream, file->StreamMatrix(info.path, options));
  auto rows = static_cast<size_t>(info.n_rows), cols = static_cast<size_t>(info.n_cols);
  std::vector<double> row_sum(rows), row_sumsq(rows), row_wsum(rows), col_sum(cols);
  std::vector<int64_t> row_nnz(rows), col_nnz(cols);
  h5ad::SparseBlock block;
  while (true) {
    CC_ASSIGN_OR_RETURN(bool more, stream->Next(&block));
    if (!more) break;
    for (int64_t m = 0; m < block.major_count; ++m) {
      for (int64_t k = block.offsets[m]; k < block.offsets[m + 1]; ++k) {
        auto major = static_cast<size_t>(block.major_begin + m);
        auto minor = static_cast<size_t>(block.minor[k]);
        size_t r = stream->by_rows() ? major : minor;
        size_t c = stream->by_rows() ? minor : major;
        double v = block.values[k];
        row_sum[r] += v;
        row_sumsq[r] += v * v;
        row_nnz[r] += v != 0;
        row_wsum[r] += v * static_cast<double>(c + 1);
        col_sum[c] += v;
        col_nnz[c] += v != 0;
      }
    }
  }
  json out;
  out["matrix"] = info.path;
  out["shape"] = {info.n_rows, info.n_cols};
  out["row_sum"] = Numbers(row_sum);
  out["row_sumsq"] = Numbers(row_sumsq);
  out["row_nnz"] = row_nnz;
  out["row_wsum"] = Numbers(row_wsum);
  out["col_sum"] = Numbers(col_sum);
  out["col_nnz"] = col_nnz;
  CC_ASSIGN_OR_RETURN(auto obs_info, file->ObsInfo());
  CC_ASSIGN_OR_RETURN(out["obs"],
                      Frame(
                          obs_info, [&] { return file->ReadObsIndex(); },
                          [&](const std::string& n) { return file->ReadObsColumn(n); }));
  CC_ASSIGN_OR_RETURN(auto var_info, file->VarInfo(info.path));
  CC_ASSIGN_OR_RETURN(out["var"],
                      Frame(
                          var_info, [&] { return file->ReadVarIndex(info.path); },
                          [&](const std::string& n) { return file->ReadVarColumn(n, info.path); }));
  std::cout << out.dump() << "\n";
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::string path, matrix = "X";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--matrix" && i + 1 < argc) {
      matrix = argv[++i];
    } else if (path.empty()) {
      path = a;
    } else {
      std::cerr << "usage: cellcube-dump FILE [--matrix PATH]\n";
      return 2;
    }
  }
  if (path.empty()) {
    std::cerr << "usage: cellcube-dump FILE [--matrix PATH]\n";
    return 2;
  }
  Status s = Dump(path, matrix);
  if (!s.ok()) {
    std::cerr << "cellcube: error: " << s.message() << "\n";
    return 1;
  }
  return 0;
}
