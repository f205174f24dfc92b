// Writing a store as an .h5ad (docs/FORMAT.md): metadata, then the entries streamed
// from their parts into arrays created at their final size; atomically (temp_output.h).
#include <algorithm>
#include <climits>
#include <functional>

#include "cellcube/h5ad_writer.h"
#include "cellcube/store_data.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "store/store_stream.h"
#include "util/isolate.h"
#include "util/text.h"
#include "util/version.h"

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

Status WriteObs(Writer& w, const StoreData& s) {
  std::vector<std::string> index;
  index.reserve(static_cast<size_t>(s.n_groups()));
  for (int64_t g = 0; g < s.n_groups(); ++g) index.push_back(std::to_string(g));
  std::vector<ColumnData> cols;
  for (size_t c = 0; c < s.columns.size(); ++c)
    cols.push_back(Categorical(s.columns[c], s.labels[c], s.codes[c]));
  cols.push_back(ColumnData::Int64(store_layout::kNCellsColumn, s.n_cells));
  return w.WriteDataFrame("obs", index, cols);
}

Status WriteVar(Writer& w, const StoreData& s) {
  return w.WriteDataFrame("var", s.gene_ids,
                          {ColumnData::Strings(store_layout::kSymbolColumn, s.gene_symbols)});
}

std::string LayerPath(const char* layer) {
  return std::string(store_layout::kLayersGroup) + "/" + layer;
}

// The layers' arrays (format 2), created at their final size and filled slice by slice
// as the entries stream in: nnz as uint16 when every group has fewer than 65,536 cells,
// sum float64, m2 float32. Index arrays use the narrowest type that holds them, the
// same for indices and indptr (scipy fails on mixed types).
class LayerWriter {
 public:
  LayerWriter(Writer& w, const StoreData& meta, int64_t n_entries)
      : w_(w),
        n_groups_(meta.n_groups()),
        n_genes_(meta.n_genes()),
        n_entries_(n_entries),
        wide_(n_entries > INT32_MAX || n_groups_ > INT32_MAX),
        narrow_nnz_(std::all_of(meta.n_cells.begin(), meta.n_cells.end(),
                                [](int64_t n) { return n <= UINT16_MAX; })),
        index_type_(wide_ ? ElemType::kInt64 : ElemType::kInt32),
        names_(EntryArraysOf(2)) {}

  Status Create() {
    CC_RETURN_IF_ERROR(w_.CreateGroup(store_layout::kLayersGroup, "dict", "0.1.0"));
    CC_RETURN_IF_ERROR(w_.CreateGroup(LayerPath(store_layout::kLayerNnz)));
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(names_.indices, index_type_, n_entries_));
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(names_.indptr, index_type_, n_genes_ + 1));
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(
        names_.nnz, narrow_nnz_ ? ElemType::kUInt16 : ElemType::kUInt32, n_entries_));
    CC_RETURN_IF_ERROR(
        w_.MarkSparse(LayerPath(store_layout::kLayerNnz), false, n_groups_, n_genes_));
    // One sparsity pattern: the other layers name the nnz layer's objects (hard links).
    const struct {
      const char* layer;
      const std::string& data;
      ElemType type;
      const std::string& indices;
      const std::string& indptr;
    } others[] = {{store_layout::kLayerSum, names_.sum, ElemType::kFloat64, names_.sum_indices,
                   names_.sum_indptr},
                  {store_layout::kLayerM2, names_.second, ElemType::kFloat32, names_.second_indices,
                   names_.second_indptr}};
    for (const auto& layer : others) {
      CC_RETURN_IF_ERROR(w_.CreateGroup(LayerPath(layer.layer)));
      CC_RETURN_IF_ERROR(w_.CreateFixedArray(layer.data, layer.type, n_entries_));
      CC_RETURN_IF_ERROR(w_.HardLink(names_.indices, layer.indices));
      CC_RETURN_IF_ERROR(w_.HardLink(names_.indptr, layer.indptr));
      CC_RETURN_IF_ERROR(w_.MarkSparse(LayerPath(layer.layer), false, n_groups_, n_genes_));
    }
    return Status::Ok();
  }

  // Writes the buffered entries at the current position and empties the buffer.
  Status Flush(EntryBuffer* buf) {
    const auto n = static_cast<int64_t>(buf->size());
    if (n > n_entries_ - written_)
      return Status::Internal("the parts hold more entries than counted");
    CC_RETURN_IF_ERROR(WriteIndices(names_.indices, written_, buf->group));
    if (narrow_nnz_) {
      nnz16_.assign(buf->nnz.begin(), buf->nnz.end());  // every count <= its group's cells
      CC_RETURN_IF_ERROR(w_.WriteSlice(names_.nnz, written_, nnz16_.data(), n));
    } else {
      CC_RETURN_IF_ERROR(w_.WriteSlice(names_.nnz, written_, buf->nnz.data(), n));
    }
    CC_RETURN_IF_ERROR(w_.WriteSlice(names_.sum, written_, buf->sum.data(), n));
    m2_.assign(buf->m2.begin(), buf->m2.end());
    CC_RETURN_IF_ERROR(w_.WriteSlice(names_.second, written_, m2_.data(), n));
    written_ += n;
    buf->Clear();
    return Status::Ok();
  }

  Status WriteIndptr(const std::vector<int64_t>& indptr) {
    return WriteIndices(names_.indptr, 0, indptr);
  }
  int64_t written() const { return written_; }

 private:
  Status WriteIndices(const std::string& path, int64_t offset, const std::vector<int64_t>& v) {
    if (wide_) return w_.WriteSlice(path, offset, v.data(), static_cast<int64_t>(v.size()));
    narrow_.assign(v.begin(), v.end());
    return w_.WriteSlice(path, offset, narrow_.data(), static_cast<int64_t>(narrow_.size()));
  }

  Writer& w_;
  const int64_t n_groups_, n_genes_, n_entries_;
  const bool wide_, narrow_nnz_;
  const ElemType index_type_;
  const EntryArrayNames names_;
  int64_t written_ = 0;
  std::vector<int32_t> narrow_;
  std::vector<uint16_t> nnz16_;
  std::vector<float> m2_;
};

// Which genes each dataset measured, as packed bits (MeasuredBits' rows, little-endian).
Status WriteMeasured(Writer& w, const StoreData& s) {
  const MeasuredBits bits = MeasuredGeneBits(s);
  const auto n_datasets = static_cast<int64_t>(s.datasets.size());
  const int64_t row_bytes = bits.words_per_row() * 8;
  std::vector<uint8_t> bytes(static_cast<size_t>(n_datasets * row_bytes));
  for (int64_t d = 0; d < n_datasets; ++d)
    for (int64_t w = 0; w < bits.words_per_row(); ++w)
      for (int b = 0; b < 8; ++b)
        bytes[static_cast<size_t>(d * row_bytes + w * 8 + b)] =
            static_cast<uint8_t>(bits.row(d)[w] >> (8 * b));
  return w.WriteArray(std::string(store_layout::kUnsGroup) + "/" + store_layout::kMeasured,
                      ElemType::kUInt8, bytes.data(), {n_datasets, row_bytes});
}

Status WriteUns(Writer& w, const StoreData& s) {
  const std::string root = store_layout::kUnsGroup;
  CC_RETURN_IF_ERROR(w.CreateGroup("uns", "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.CreateGroup(root, "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.WriteScalarString(root + "/format", store_layout::kFormatName));
  CC_RETURN_IF_ERROR(w.WriteScalarString(root + "/format_version", kStoreFormatVersion));
  CC_RETURN_IF_ERROR(
      w.WriteScalarString(root + "/created_by", std::string("cellcube ") + Version()));
  std::vector<std::string> names, sources, matrices, transforms, cell_type_cols, groupbys, symbols,
      donors;
  std::vector<int64_t> sizes, mtimes, cells, genes, groups, negative;
  for (const auto& d : s.datasets) {
    names.push_back(d.name);
    sources.push_back(d.source);
    matrices.push_back(d.matrix);
    transforms.push_back(d.transform);
    cell_type_cols.push_back(d.cell_type_column);
    groupbys.push_back(Join(d.groupby));
    symbols.push_back(d.gene_symbols_column);
    donors.push_back(d.donor_column);
    sizes.push_back(d.source_size);
    mtimes.push_back(d.source_mtime);
    cells.push_back(d.n_cells);
    genes.push_back(d.n_genes);
    groups.push_back(d.n_groups);
    negative.push_back(static_cast<int64_t>(d.negative_values));
  }
  CC_RETURN_IF_ERROR(w.WriteDataFrame(
      root + "/datasets", names,
      {ColumnData::Strings("source", sources), ColumnData::Int64("source_size", sizes),
       ColumnData::Int64("source_mtime", mtimes), ColumnData::Int64("n_cells", cells),
       ColumnData::Int64("n_genes", genes), ColumnData::Int64("n_groups", groups),
       ColumnData::Strings("matrix", matrices), ColumnData::Strings("transform", transforms),
       ColumnData::Strings("cell_type_column", cell_type_cols),
       ColumnData::Strings("groupby", groupbys),
       ColumnData::Strings("gene_symbols_column", symbols),
       ColumnData::Strings("donor_column", donors),
       ColumnData::Int64("negative_values", negative)}));
  return WriteMeasured(w, s);
}

Status WriteMetadata(Writer& w, const StoreData& s) {
  CC_RETURN_IF_ERROR(WriteObs(w, s));
  CC_RETURN_IF_ERROR(WriteVar(w, s));
  CC_RETURN_IF_ERROR(WriteUns(w, s));
  for (const char* empty : {"obsm", "varm", "obsp", "varp"})
    CC_RETURN_IF_ERROR(w.CreateGroup(empty, "dict", "0.1.0"));
  return Status::Ok();
}

constexpr uint64_t kArrayAlignment = 4096;
constexpr size_t kFlushEntries = size_t{1} << 18;  // 8 MiB of entries per write

// Draws every gene's runs from the parts, in order, into the layers.
Status StreamEntries(const StoreData& meta, const std::vector<StreamedPart>& parts,
                     LayerWriter& layers, const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t n_genes = meta.n_genes(), n_groups = meta.n_groups();
  std::vector<int64_t> indptr(static_cast<size_t>(n_genes) + 1, 0);
  EntryBuffer buf;
  buf.Reserve(kFlushEntries + kFlushEntries / 4);
  for (int64_t gene = 0; gene < n_genes; ++gene) {
    const size_t run_start = buf.size();
    for (const StreamedPart& p : parts) {
      const int64_t next = p.source->next_gene();
      if (next < gene) return Status::Internal("a part's runs are not in gene order");
      if (next == gene) CC_RETURN_IF_ERROR(p.source->TakeRun(p.group_offset, &buf));
    }
    for (size_t k = run_start; k < buf.size(); ++k) {
      const int64_t g = buf.group[k];
      if (g < 0 || g >= n_groups || (k > run_start && g <= buf.group[k - 1]))
        return Status::Internal("streamed entries are not ascending groups within a gene");
    }
    indptr[static_cast<size_t>(gene) + 1] = layers.written() + static_cast<int64_t>(buf.size());
    if (buf.size() >= kFlushEntries) CC_RETURN_IF_ERROR(layers.Flush(&buf));
    if (progress && (gene % 256 == 255 || gene + 1 == n_genes)) progress(gene + 1, n_genes);
  }
  CC_RETURN_IF_ERROR(layers.Flush(&buf));
  for (const StreamedPart& p : parts)
    if (p.source->next_gene() != kNoGene)
      return Status::Internal("a part has entries for genes the store does not have");
  return layers.WriteIndptr(indptr);
}

// The entries of an in-memory StoreData as one part.
class InMemorySource : public RunSource {
 public:
  explicit InMemorySource(const StoreData& s) : s_(s) { Skip(); }
  int64_t next_gene() const override { return gene_ < s_.n_genes() ? gene_ : kNoGene; }
  Status TakeRun(int64_t group_offset, EntryBuffer* out) override {
    for (int64_t k = s_.indptr[gene_]; k < s_.indptr[gene_ + 1]; ++k)
      out->Add(s_.group[k] + group_offset, s_.nnz[k], s_.sum[k], s_.m2[k]);
    ++gene_;
    Skip();
    return Status::Ok();
  }

 private:
  void Skip() {
    while (gene_ < s_.n_genes() && s_.indptr[gene_] == s_.indptr[gene_ + 1]) ++gene_;
  }
  const StoreData& s_;
  int64_t gene_ = 0;
};

}  // namespace

Status WriteStreamedStore(const StoreData& meta, int64_t n_entries,
                          const std::vector<StreamedPart>& parts, TempOutput& out,
                          const std::function<void(int64_t, int64_t)>& progress) {
  auto in_context = [&](const Status& s) {
    return s.WithContext("writing store '" + out.target() + "'");
  };
  CC_RETURN_IF_ERROR(meta.ValidateMetadata());
  NoteActivity("writing store '" + out.target() + "'");
  // Page-aligned arrays: a reader maps the file and reads every array in place.
  auto w = Writer::Create(out.temp_path(), kArrayAlignment);
  if (!w.ok()) return in_context(w.status());
  (*w)->PreferFixedWidthStrings(true);  // an open reads 60,000 gene ids in a millisecond
  LayerWriter layers(**w, meta, n_entries);
  Status s = WriteMetadata(**w, meta);
  if (s.ok()) s = layers.Create();
  if (s.ok()) s = StreamEntries(meta, parts, layers, progress);
  if (s.ok() && layers.written() != n_entries)
    s = Status::Internal("the parts hold fewer entries than counted");
  Status closed = (*w)->Close();
  if (s.ok()) s = closed;
  if (s.ok()) s = out.Commit();
  if (!s.ok()) return in_context(s);
  return Status::Ok();
}

Status WriteStore(const StoreData& store, const std::string& path) {
  CC_RETURN_IF_ERROR(store.Validate());
  CC_ASSIGN_OR_RETURN(auto out, TempOutput::Begin(path));
  InMemorySource source(store);
  return WriteStreamedStore(store, store.n_entries(), {{&source, 0}}, *out, {});
}

}  // namespace cellcube
