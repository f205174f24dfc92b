// Reading a store back into StoreData (for add, remove, merge and info), through the
// h5ad reader: every part is checked by StoreData::Validate before use.
#include <sys/stat.h>

#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "util/text.h"

namespace cellcube {
namespace {

using h5ad::Column;
using h5ad::File;

// Per-row strings of a column ("" for missing).
std::vector<std::string> Expand(const Column& col) {
  std::vector<std::string> out;
  out.reserve(col.codes.size());
  for (int32_t c : col.codes) out.push_back(c < 0 ? "" : col.labels[static_cast<size_t>(c)]);
  return out;
}

Status CheckFormat(const File& f) {
  const std::string root = store_layout::kUnsGroup;
  auto format = f.ReadScalarString(root + "/format");
  if (!format.ok() || *format != store_layout::kFormatName)
    return Status::InvalidArgument("'" + f.path() +
                                   "' is an .h5ad file but not a cellcube store (build one with "
                                   "'cellcube build')");
  CC_ASSIGN_OR_RETURN(std::string version, f.ReadScalarString(root + "/format_version"));
  if (version != kStoreFormatVersion)
    return Status::Unsupported("'" + f.path() + "' is a cellcube store of format version " +
                               version + "; this cellcube reads version " + kStoreFormatVersion);
  return Status::Ok();
}

Status LoadGroups(const File& f, StoreData* s) {
  CC_ASSIGN_OR_RETURN(auto obs, f.ObsInfo());
  for (const auto& name : obs.column_names) {
    if (name == store_layout::kNCellsColumn) continue;
    CC_ASSIGN_OR_RETURN(Column col, f.ReadObsColumn(name));
    s->columns.push_back(name);
    s->labels.push_back(std::move(col.labels));
    s->codes.push_back(std::move(col.codes));
  }
  CC_ASSIGN_OR_RETURN(s->n_cells,
                      f.ReadIntegers(std::string("obs/") + store_layout::kNCellsColumn));
  return Status::Ok();
}

Status LoadGenes(const File& f, StoreData* s) {
  CC_ASSIGN_OR_RETURN(s->gene_ids, f.ReadVarIndex());
  CC_ASSIGN_OR_RETURN(Column symbols, f.ReadVarColumn(store_layout::kSymbolColumn));
  s->gene_symbols = Expand(symbols);
  return Status::Ok();
}

Status LoadEntries(const File& f, StoreData* s) {
  const std::string nnz = std::string(store_layout::kLayersGroup) + "/" + store_layout::kLayerNnz;
  const std::string sum = std::string(store_layout::kLayersGroup) + "/" + store_layout::kLayerSum;
  const std::string sumsq =
      std::string(store_layout::kLayersGroup) + "/" + store_layout::kLayerSumsq;
  CC_ASSIGN_OR_RETURN(s->indptr, f.ReadIntegers(nnz + "/indptr"));
  CC_ASSIGN_OR_RETURN(auto groups, f.ReadIntegers(nnz + "/indices"));
  CC_ASSIGN_OR_RETURN(auto nnz_values, f.ReadDoubles(nnz + "/data"));
  CC_ASSIGN_OR_RETURN(auto sum_values, f.ReadDoubles(sum + "/data"));
  CC_ASSIGN_OR_RETURN(auto sumsq_values, f.ReadDoubles(sumsq + "/data"));
  if (nnz_values.size() != groups.size() || sum_values.size() != groups.size() ||
      sumsq_values.size() != groups.size())
    return Status::Corrupt("store layers have different numbers of entries");
  s->group.reserve(groups.size());
  for (int64_t g : groups) {
    if (g < 0 || g > INT32_MAX) return Status::Corrupt("store entry group out of range");
    s->group.push_back(static_cast<int32_t>(g));
  }
  s->nnz.reserve(groups.size());
  for (double v : nnz_values) {
    if (!(v >= 0 && v <= UINT32_MAX)) return Status::Corrupt("store nnz out of range");
    s->nnz.push_back(static_cast<uint32_t>(v));
  }
  s->sum.assign(sum_values.begin(), sum_values.end());
  s->sumsq.assign(sumsq_values.begin(), sumsq_values.end());
  return Status::Ok();
}

Status LoadDatasets(const File& f, StoreData* s) {
  const std::string root = std::string(store_layout::kUnsGroup) + "/datasets";
  CC_ASSIGN_OR_RETURN(auto frame, f.DataFrameAt(root));
  CC_ASSIGN_OR_RETURN(auto names, f.ReadIndexAt(frame));
  auto strings = [&](const char* col) -> Result<std::vector<std::string>> {
    CC_ASSIGN_OR_RETURN(Column c, f.ReadColumnAt(frame, col));
    return Expand(c);
  };
  auto ints = [&](const char* col) { return f.ReadIntegers(root + "/" + col); };
  CC_ASSIGN_OR_RETURN(auto sources, strings("source"));
  CC_ASSIGN_OR_RETURN(auto matrices, strings("matrix"));
  CC_ASSIGN_OR_RETURN(auto transforms, strings("transform"));
  CC_ASSIGN_OR_RETURN(auto cell_type_cols, strings("cell_type_column"));
  CC_ASSIGN_OR_RETURN(auto groupbys, strings("groupby"));
  CC_ASSIGN_OR_RETURN(auto symbol_cols, strings("gene_symbols_column"));
  CC_ASSIGN_OR_RETURN(auto sizes, ints("source_size"));
  CC_ASSIGN_OR_RETURN(auto mtimes, ints("source_mtime"));
  CC_ASSIGN_OR_RETURN(auto cells, ints("n_cells"));
  CC_ASSIGN_OR_RETURN(auto genes, ints("n_genes"));
  CC_ASSIGN_OR_RETURN(auto groups, ints("n_groups"));
  CC_ASSIGN_OR_RETURN(auto m_indptr,
                      f.ReadIntegers(std::string(store_layout::kUnsGroup) + "/measured_indptr"));
  CC_ASSIGN_OR_RETURN(auto m_genes,
                      f.ReadIntegers(std::string(store_layout::kUnsGroup) + "/measured_genes"));
  const size_t n = names.size();
  if (m_indptr.size() != n + 1 || m_indptr[0] != 0 ||
      m_indptr.back() != static_cast<int64_t>(m_genes.size()))
    return Status::Corrupt("store: measured genes do not match the datasets");
  for (const auto* column : {&sizes, &mtimes, &cells, &genes, &groups})
    if (column->size() != n) return Status::Corrupt("store: dataset columns of different lengths");
  for (size_t d = 0; d < n; ++d) {
    DatasetRecord r;
    r.name = names[d];
    r.source = sources[d];
    r.source_size = sizes.at(d);
    r.source_mtime = mtimes.at(d);
    r.n_cells = cells.at(d);
    r.n_genes = genes.at(d);
    r.n_groups = groups.at(d);
    r.matrix = matrices[d];
    r.transform = transforms[d];
    r.cell_type_column = cell_type_cols[d];
    r.groupby = SplitList(groupbys[d]);
    r.gene_symbols_column = symbol_cols[d];
    if (m_indptr[d + 1] < m_indptr[d] || m_indptr[d + 1] > m_indptr.back())
      return Status::Corrupt("store: measured genes decrease");
    for (int64_t k = m_indptr[d]; k < m_indptr[d + 1]; ++k) {
      if (m_genes[k] < 0 || m_genes[k] > INT32_MAX) return Status::Corrupt("store: bad gene");
      r.measured_genes.push_back(static_cast<int32_t>(m_genes[k]));
    }
    s->datasets.push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace

Status LoadStoreMetadata(const File& file, StoreData* s) {
  CC_RETURN_IF_ERROR(CheckFormat(file));
  CC_RETURN_IF_ERROR(LoadGroups(file, s));
  CC_RETURN_IF_ERROR(LoadGenes(file, s));
  return LoadDatasets(file, s);
}

Result<StoreData> LoadStore(const std::string& path) {
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  CC_RETURN_IF_ERROR(CheckFormat(*file));
  StoreData s;
  auto in_context = [&](const Status& st) { return st.WithContext("store '" + path + "'"); };
  if (Status st = LoadGroups(*file, &s); !st.ok()) return in_context(st);
  if (Status st = LoadGenes(*file, &s); !st.ok()) return in_context(st);
  if (Status st = LoadEntries(*file, &s); !st.ok()) return in_context(st);
  if (Status st = LoadDatasets(*file, &s); !st.ok()) return in_context(st);
  if (Status st = s.Validate(); !st.ok()) return in_context(st);
  return s;
}

Result<std::unique_ptr<File>> OpenStoreMetadata(const std::string& path, StoreData* s) {
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  auto in_context = [&](const Status& st) { return st.WithContext("store '" + path + "'"); };
  if (Status st = LoadStoreMetadata(*file, s); !st.ok()) return in_context(st);
  if (Status st = s->ValidateMetadata(); !st.ok()) return in_context(st);
  return file;
}

std::vector<uint64_t> MeasuredGeneBits(const StoreData& s) {
  const auto n_genes = static_cast<uint64_t>(s.n_genes());
  std::vector<uint64_t> bits((s.datasets.size() * n_genes + 63) / 64, 0);
  for (size_t d = 0; d < s.datasets.size(); ++d)
    for (int32_t g : s.datasets[d].measured_genes) {
      const uint64_t bit = d * n_genes + static_cast<uint64_t>(g);
      bits[bit >> 6] |= uint64_t{1} << (bit & 63);
    }
  return bits;
}

Result<StoreData> ReadStoreMetadata(const std::string& path, int64_t* n_entries) {
  StoreData s;
  CC_ASSIGN_OR_RETURN(auto file, OpenStoreMetadata(path, &s));
  const std::string indices =
      std::string(store_layout::kLayersGroup) + "/" + store_layout::kLayerNnz + "/indices";
  auto extent = file->Locate(indices);
  if (!extent.ok()) return extent.status().WithContext("store '" + path + "'");
  *n_entries = extent->elements;
  return s;
}

}  // namespace cellcube
