// Saving StoreData as an .h5ad (docs/FORMAT.md), atomically: temp file, fsync, rename.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cellcube/h5ad_writer.h"
#include "cellcube/store.h"
#include "store/store_layout.h"
#include "util/isolate.h"

namespace cellcube {
namespace {

using h5ad::ColumnData;
using h5ad::ElemType;
using h5ad::Writer;

ColumnData Categorical(const std::string& name, const std::vector<std::string>& labels,
                       const std::vector<int32_t>& codes) {
  ColumnData c;
  c.name = name;
  c.type = ColumnData::Type::kCategorical;
  c.labels = labels;
  c.codes = codes;
  return c;
}

ColumnData Strings(const std::string& name, std::vector<std::string> values) {
  ColumnData c;
  c.name = name;
  c.type = ColumnData::Type::kStrings;
  c.labels = std::move(values);
  return c;
}

ColumnData Integers(const std::string& name, std::vector<int64_t> values) {
  ColumnData c;
  c.name = name;
  c.type = ColumnData::Type::kInt64;
  c.ints = std::move(values);
  return c;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out;
}

Status WriteObs(Writer& w, const StoreData& s) {
  std::vector<std::string> index;
  index.reserve(static_cast<size_t>(s.n_groups()));
  for (int64_t g = 0; g < s.n_groups(); ++g) index.push_back(std::to_string(g));
  std::vector<ColumnData> cols;
  for (size_t c = 0; c < s.columns.size(); ++c)
    cols.push_back(Categorical(s.columns[c], s.labels[c], s.codes[c]));
  cols.push_back(Integers(store_layout::kNCellsColumn, s.n_cells));
  return w.WriteDataFrame("obs", index, cols);
}

Status WriteVar(Writer& w, const StoreData& s) {
  return w.WriteDataFrame("var", s.gene_ids,
                          {Strings(store_layout::kSymbolColumn, s.gene_symbols)});
}

// Index arrays in the narrowest type that holds them, the same for indices and indptr.
template <typename Index>
Status WriteIndexArrays(Writer& w, const StoreData& s, ElemType type) {
  std::vector<Index> indices(s.group.begin(), s.group.end());
  std::vector<Index> indptr(s.indptr.begin(), s.indptr.end());
  const std::string base = std::string(store_layout::kLayersGroup) + "/" + store_layout::kLayerNnz;
  CC_RETURN_IF_ERROR(w.WriteArray(base + "/indices", type, indices.data(),
                                  {static_cast<int64_t>(indices.size())}));
  return w.WriteArray(base + "/indptr", type, indptr.data(), {static_cast<int64_t>(indptr.size())});
}

Status WriteLayers(Writer& w, const StoreData& s) {
  const std::string layers = store_layout::kLayersGroup;
  CC_RETURN_IF_ERROR(w.CreateGroup(layers, "dict", "0.1.0"));
  const int64_t n = s.n_entries();
  struct Layer {
    const char* name;
    ElemType type;
    const void* data;
  };
  const Layer all[] = {{store_layout::kLayerNnz, ElemType::kUInt32, s.nnz.data()},
                       {store_layout::kLayerSum, ElemType::kFloat64, s.sum.data()},
                       {store_layout::kLayerSumsq, ElemType::kFloat64, s.sumsq.data()}};
  const bool wide = n > INT32_MAX || s.n_groups() > INT32_MAX;
  for (const Layer& layer : all) {
    const std::string path = layers + "/" + layer.name;
    CC_RETURN_IF_ERROR(w.CreateGroup(path));
    CC_RETURN_IF_ERROR(w.WriteArray(path + "/data", layer.type, layer.data, {n}));
    if (&layer == &all[0]) {  // the first layer owns the shared pattern
      CC_RETURN_IF_ERROR(wide ? WriteIndexArrays<int64_t>(w, s, ElemType::kInt64)
                              : WriteIndexArrays<int32_t>(w, s, ElemType::kInt32));
    } else {
      // One sparsity pattern: the other layers name the same objects (hard links).
      const std::string shared = layers + "/" + all[0].name;
      CC_RETURN_IF_ERROR(w.HardLink(shared + "/indices", path + "/indices"));
      CC_RETURN_IF_ERROR(w.HardLink(shared + "/indptr", path + "/indptr"));
    }
    CC_RETURN_IF_ERROR(w.MarkSparse(path, /*csr=*/false, s.n_groups(), s.n_genes()));
  }
  return Status::Ok();
}

Status WriteUns(Writer& w, const StoreData& s) {
  const std::string root = store_layout::kUnsGroup;
  CC_RETURN_IF_ERROR(w.CreateGroup("uns", "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.CreateGroup(root, "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.WriteScalarString(root + "/format", store_layout::kFormatName));
  CC_RETURN_IF_ERROR(w.WriteScalarString(root + "/format_version", kStoreFormatVersion));
  CC_RETURN_IF_ERROR(
      w.WriteScalarString(root + "/created_by", std::string("cellcube ") + CELLCUBE_VERSION));
  std::vector<std::string> names, sources, matrices, transforms, cell_type_cols, groupbys, symbols;
  std::vector<int64_t> sizes, mtimes, cells, genes, groups;
  std::vector<int64_t> measured_indptr{0};
  std::vector<int32_t> measured;
  for (const auto& d : s.datasets) {
    names.push_back(d.name);
    sources.push_back(d.source);
    matrices.push_back(d.matrix);
    transforms.push_back(d.transform);
    cell_type_cols.push_back(d.cell_type_column);
    groupbys.push_back(Join(d.groupby));
    symbols.push_back(d.gene_symbols_column);
    sizes.push_back(d.source_size);
    mtimes.push_back(d.source_mtime);
    cells.push_back(d.n_cells);
    genes.push_back(d.n_genes);
    groups.push_back(d.n_groups);
    measured.insert(measured.end(), d.measured_genes.begin(), d.measured_genes.end());
    measured_indptr.push_back(static_cast<int64_t>(measured.size()));
  }
  CC_RETURN_IF_ERROR(w.WriteDataFrame(
      root + "/datasets", names,
      {Strings("source", sources), Integers("source_size", sizes), Integers("source_mtime", mtimes),
       Integers("n_cells", cells), Integers("n_genes", genes), Integers("n_groups", groups),
       Strings("matrix", matrices), Strings("transform", transforms),
       Strings("cell_type_column", cell_type_cols), Strings("groupby", groupbys),
       Strings("gene_symbols_column", symbols)}));
  CC_RETURN_IF_ERROR(w.WriteArray(root + "/measured_indptr", ElemType::kInt64,
                                  measured_indptr.data(),
                                  {static_cast<int64_t>(measured_indptr.size())}));
  return w.WriteArray(root + "/measured_genes", ElemType::kInt32, measured.data(),
                      {static_cast<int64_t>(measured.size())});
}

Status WriteAll(const StoreData& s, const std::string& path) {
  CC_ASSIGN_OR_RETURN(auto w, Writer::Create(path));
  CC_RETURN_IF_ERROR(WriteObs(*w, s));
  CC_RETURN_IF_ERROR(WriteVar(*w, s));
  CC_RETURN_IF_ERROR(WriteLayers(*w, s));
  CC_RETURN_IF_ERROR(WriteUns(*w, s));
  for (const char* empty : {"obsm", "varm", "obsp", "varp"})
    CC_RETURN_IF_ERROR(w->CreateGroup(empty, "dict", "0.1.0"));
  return w->Close();
}

Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return Status::IoError("cannot open '" + path + "' to sync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IoError("cannot sync '" + path + "': " + std::strerror(err));
  return Status::Ok();
}

std::string TempPathBeside(const std::string& path) {
  static std::atomic<int> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

Status WriteStore(const StoreData& store, const std::string& path) {
  CC_RETURN_IF_ERROR(store.Validate());
  std::filesystem::path target(path);
  std::error_code ec;
  if (std::filesystem::is_directory(target, ec))
    return Status::InvalidArgument("'" + path + "' is a directory; give a file path for the store");
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  if (!std::filesystem::is_directory(dir, ec))
    return Status::NotFound("cannot write '" + path + "': directory '" + dir + "' does not exist");
  const std::string tmp = TempPathBeside(path);
  NoteTemporaryFile(tmp);  // removed by the parent if this process dies mid-write
  Status s = WriteAll(store, tmp);
  if (s.ok()) s = SyncPath(tmp, false);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    s = Status::IoError("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  if (!s.ok()) std::remove(tmp.c_str());
  NoteTemporaryFile("");
  if (!s.ok()) return s.WithContext("writing store '" + path + "'");
  return SyncPath(dir, true);
}

}  // namespace cellcube
