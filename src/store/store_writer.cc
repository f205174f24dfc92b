// Writing a store as an .h5ad (docs/FORMAT.md): metadata, then the entries streamed
// from their parts into arrays created at their final size; atomically (temp_output.h).
#include <algorithm>
#include <climits>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "cellcube/h5ad_writer.h"
#include "cellcube/store_data.h"
#include "histogram/histogram.h"
#include "store/entry_rules.h"
#include "store/store_layout.h"
#include "store/store_loader.h"
#include "store/store_stream.h"
#include "util/isolate.h"
#include "util/parallel.h"
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

// Format 3's arrays outside the layers (docs/FORMAT.md "raw.cellcube"): where each
// dataset's entries start within each gene (entry_offsets, always), and with histograms
// every entry's record (hist_data, `hist_bytes` in all), where each gene's records start
// (hist_indptr) and where each dataset's start within each gene (hist_offsets). Fed one
// gene at a time; every record is checked before it is written (entry_rules.h).
class RawWriter {
 public:
  RawWriter(Writer& w, const StoreData& meta, uint64_t hist_bytes)
      : w_(w),
        meta_(meta),
        n_datasets_(static_cast<int64_t>(meta.datasets.size())),
        hist_bytes_(hist_bytes),
        starts_(DatasetGroupStarts(meta.codes[0], meta.datasets.size())),
        hist_indptr_(meta.has_histograms() ? static_cast<size_t>(meta.n_genes()) + 1 : 0, 0) {
    for (const DatasetRecord& d : meta.datasets)
      not_binned_.push_back(d.negative_values == NegativeValues::kSome);
  }

  Status Create() {
    if (starts_.empty())
      return Status::InvalidArgument(
          "the store's groups are not in the order of its datasets (format 3 keeps each "
          "dataset's groups together)");
    if (!meta_.has_histograms() && hist_bytes_ != 0)
      return Status::Internal("histogram records for a store without histograms");
    const std::vector<int64_t> pairs = {meta_.n_genes(), n_datasets_};
    CC_RETURN_IF_ERROR(w_.CreateGroup(store_layout::kRawGroup));
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(store_layout::kEntryOffsets, ElemType::kUInt32, pairs));
    if (!meta_.has_histograms()) return Status::Ok();
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(store_layout::kHistData, ElemType::kUInt8,
                                           static_cast<int64_t>(hist_bytes_)));
    CC_RETURN_IF_ERROR(w_.CreateFixedArray(store_layout::kHistOffsets, ElemType::kUInt32, pairs));
    return w_.CreateFixedArray(store_layout::kHistIndptr, ElemType::kInt64, meta_.n_genes() + 1);
  }

  // Gene `gene`'s entries are buf's [begin, end) (groups checked), the last of the
  // buffer's records written so far: checks their records and adds the gene's rows of
  // offsets.
  Status AddGene(int64_t gene, const EntryBuffer& buf, size_t begin, size_t end) {
    const size_t n = end - begin;
    const size_t row = entry_rows_.size();
    entry_rows_.resize(row + static_cast<size_t>(n_datasets_));
    EntryOffsetsOfGene(buf.group.data() + begin, n, starts_, entry_rows_.data() + row);
    if (!meta_.has_histograms()) {
      if (buf.hist.empty()) return FlushRowsIfFull();
      return Status::Internal("histogram records for a store without histograms");
    }
    for (size_t k = begin; k < end; ++k) {
      const int32_t d = meta_.codes[0][static_cast<size_t>(buf.group[k])];
      if (const char* fault = RecordFault(buf.RecordOf(k), buf.RecordLength(k), buf.nnz[k],
                                          not_binned_[static_cast<size_t>(d)]))
        return Status::Internal("entry " + std::to_string(k - begin) + " of gene " + "'" +
                                meta_.gene_ids[static_cast<size_t>(gene)] + "': " + fault);
    }
    const uint64_t first = buf.RecordStart(begin), bytes = buf.RecordStart(end) - first;
    if (bytes > UINT32_MAX)
      return Status::InvalidArgument(
          "the histograms of gene '" + meta_.gene_ids[static_cast<size_t>(gene)] + "' take " +
          std::to_string(bytes) +
          " bytes, more than the 4 GiB one gene's may take; build the store with --no-histograms");
    hist_rows_.resize(entry_rows_.size());
    for (size_t d = 0; d < static_cast<size_t>(n_datasets_); ++d) {
      const uint32_t e = entry_rows_[row + d];
      hist_rows_[row + d] = static_cast<uint32_t>(e == 0 ? 0 : buf.hist_end[begin + e - 1] - first);
    }
    hist_indptr_[static_cast<size_t>(gene) + 1] = hist_written_ + buf.RecordStart(end);
    return FlushRowsIfFull();
  }

  // Writes the buffer's records at the current position (before the buffer is emptied).
  Status WriteRecords(const EntryBuffer& buf) {
    if (buf.hist.empty()) return Status::Ok();
    if (buf.hist.size() > hist_bytes_ - hist_written_)
      return Status::Internal("the parts hold more histogram bytes than counted");
    CC_RETURN_IF_ERROR(w_.WriteSlice(store_layout::kHistData, static_cast<int64_t>(hist_written_),
                                     buf.hist.data(), static_cast<int64_t>(buf.hist.size())));
    hist_written_ += buf.hist.size();
    return Status::Ok();
  }

  // Writes what is left once every gene was added.
  Status Finish() {
    CC_RETURN_IF_ERROR(FlushRows());
    if (!meta_.has_histograms()) return Status::Ok();
    if (hist_written_ != hist_bytes_)
      return Status::Internal("the parts hold fewer histogram bytes than counted");
    return w_.WriteSlice(store_layout::kHistIndptr, 0, hist_indptr_.data(),
                         static_cast<int64_t>(hist_indptr_.size()));
  }

 private:
  static constexpr size_t kRowElements = size_t{1} << 20;  // 4 MiB of offsets per write

  Status FlushRowsIfFull() {
    return entry_rows_.size() >= kRowElements ? FlushRows() : Status::Ok();
  }
  Status FlushRows() {
    const auto n = static_cast<int64_t>(entry_rows_.size());
    CC_RETURN_IF_ERROR(
        w_.WriteSlice(store_layout::kEntryOffsets, rows_written_, entry_rows_.data(), n));
    if (meta_.has_histograms())
      CC_RETURN_IF_ERROR(
          w_.WriteSlice(store_layout::kHistOffsets, rows_written_, hist_rows_.data(), n));
    rows_written_ += n;
    entry_rows_.clear();
    hist_rows_.clear();
    return Status::Ok();
  }

  Writer& w_;
  const StoreData& meta_;
  const int64_t n_datasets_;
  const uint64_t hist_bytes_;
  const std::vector<int64_t> starts_;  // per dataset, its first group; then the groups
  std::vector<bool> not_binned_;       // per dataset: negative values, empty records
  std::vector<int64_t> hist_indptr_;
  std::vector<uint32_t> entry_rows_, hist_rows_;  // rows not yet written
  int64_t rows_written_ = 0;                      // elements of the offset arrays
  uint64_t hist_written_ = 0;
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

// The histograms' layout (docs/FORMAT.md "Histograms"), a dict in uns/cellcube; absent
// when the store has none.
Status WriteHistogramLayout(Writer& w, const StoreData& s) {
  if (!s.has_histograms()) return Status::Ok();
  const std::string group = std::string(store_layout::kUnsGroup) + "/" + store_layout::kHistograms;
  const int64_t bins = histogram::kBins;
  CC_RETURN_IF_ERROR(w.CreateGroup(group, "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.WriteArray(group + "/bins", ElemType::kInt64, &bins, {}));
  return w.WriteArray(group + "/max", ElemType::kFloat64, &s.hist_max, {});
}

// The embedded ontology terms (docs/FORMAT.md "Ontology terms"), a dict in uns/cellcube;
// absent when the store has none.
Status WriteOntology(Writer& w, const StoreData& s) {
  const StoreOntologies& o = s.ontology;
  if (o.empty()) return Status::Ok();
  const std::string group = std::string(store_layout::kUnsGroup) + "/" + store_layout::kOntology;
  std::vector<std::string> names, versions;
  for (const auto& source : o.ontologies) {
    names.push_back(source.name);
    versions.push_back(source.version);
  }
  auto ints32 = [&](const char* name, const std::vector<int32_t>& v) {
    return w.WriteArray(group + "/" + name, ElemType::kInt32, v.data(),
                        {static_cast<int64_t>(v.size())});
  };
  CC_RETURN_IF_ERROR(w.CreateGroup(group, "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.WriteStrings(group + "/ontology_names", names));
  CC_RETURN_IF_ERROR(w.WriteStrings(group + "/ontology_versions", versions));
  CC_RETURN_IF_ERROR(w.WriteStrings(group + "/term_ids", o.term_ids));
  CC_RETURN_IF_ERROR(w.WriteStrings(group + "/term_labels", o.term_labels));
  CC_RETURN_IF_ERROR(ints32("term_ontology", o.term_ontology));
  CC_RETURN_IF_ERROR(w.WriteArray(group + "/ancestor_begin", ElemType::kInt64,
                                  o.ancestor_begin.data(),
                                  {static_cast<int64_t>(o.ancestor_begin.size())}));
  CC_RETURN_IF_ERROR(ints32("ancestors", o.ancestors));
  CC_RETURN_IF_ERROR(ints32("ancestor_distance", o.ancestor_distance));
  CC_RETURN_IF_ERROR(w.WriteStrings(group + "/columns", o.columns));
  return ints32("column_ontology", o.column_ontology);
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
  std::vector<int64_t> sizes, mtimes, cells, genes, groups, negative, above;
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
    above.push_back(d.values_above_hist_max);
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
       ColumnData::Strings("donor_column", donors), ColumnData::Int64("negative_values", negative),
       ColumnData::Int64("values_above_hist_max", above)}));
  CC_RETURN_IF_ERROR(WriteHistogramLayout(w, s));
  CC_RETURN_IF_ERROR(WriteOntology(w, s));
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
// A batch of whole genes' entries drawn from the parts, then written: two are in flight
// (one drawn while the other is written), each half of the one buffer the writer once
// had, so the memory is the same.
constexpr size_t kBatchEntries = size_t{1} << 17;      // 4 MiB of entries per write
constexpr size_t kBatchRecordBytes = size_t{8} << 20;  // and at most 8 MiB of records

// Whole genes' runs drawn from the parts: gene g's entries are buf's [start[g - first],
// start[g - first + 1]), the last gene's up to buf.size().
struct Batch {
  EntryBuffer buf;
  int64_t first = 0;          // the first gene
  std::vector<size_t> start;  // per gene from `first`
  void Clear(int64_t gene) {
    buf.Clear();
    first = gene;
    start.clear();
  }
  size_t End(size_t i) const { return i + 1 < start.size() ? start[i + 1] : buf.size(); }
};

// Draws genes from `gene` on into `b` until it holds a batch's worth (or the last gene);
// returns the gene after them. The parts are read front to back, once.
Result<int64_t> DrawBatch(const std::vector<StreamedPart>& parts, int64_t gene, int64_t n_genes,
                          int64_t n_groups, Batch* b) {
  b->Clear(gene);
  EntryBuffer& buf = b->buf;
  for (; gene < n_genes; ++gene) {
    const size_t run_start = buf.size();
    b->start.push_back(run_start);
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
    if (buf.size() >= kBatchEntries || buf.hist.size() >= kBatchRecordBytes) return gene + 1;
  }
  return gene;
}

// Writes a batch: each gene's rows of offsets, then its entries and records.
Status WriteBatch(Batch* b, LayerWriter& layers, RawWriter& raw, std::vector<int64_t>* indptr) {
  for (size_t i = 0; i < b->start.size(); ++i) {
    const int64_t gene = b->first + static_cast<int64_t>(i);
    CC_RETURN_IF_ERROR(raw.AddGene(gene, b->buf, b->start[i], b->End(i)));
    (*indptr)[static_cast<size_t>(gene) + 1] = layers.written() + static_cast<int64_t>(b->End(i));
  }
  CC_RETURN_IF_ERROR(raw.WriteRecords(b->buf));
  return layers.Flush(&b->buf);
}

// Batches handed from the thread drawing them to the thread writing them, at most two.
class BatchQueue {
 public:
  // The drawer: an empty batch to fill, or null once the writer stopped.
  Batch* TakeEmpty() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !empty_.empty() || stopped_; });
    if (stopped_) return nullptr;
    Batch* b = empty_.back();
    empty_.pop_back();
    return b;
  }
  void PutFull(Batch* b) {
    std::lock_guard<std::mutex> lock(mu_);
    full_.push_back(b);
    cv_.notify_all();
  }
  // The writer: the next full batch in order, or null when the drawer finished or failed.
  Batch* TakeFull() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !full_.empty() || drawn_; });
    if (full_.empty()) return nullptr;
    Batch* b = full_.front();
    full_.erase(full_.begin());
    return b;
  }
  void PutEmpty(Batch* b) {
    std::lock_guard<std::mutex> lock(mu_);
    empty_.push_back(b);
    cv_.notify_all();
  }
  void FinishDrawing(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    drawn_ = true;
    draw_status_ = std::move(s);
    cv_.notify_all();
  }
  void StopWriting() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }
  Status draw_status() {
    std::lock_guard<std::mutex> lock(mu_);
    return draw_status_;
  }
  explicit BatchQueue(std::vector<Batch>* batches) {
    for (Batch& b : *batches) empty_.push_back(&b);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Batch*> empty_, full_;
  bool drawn_ = false, stopped_ = false;
  Status draw_status_;
};

// Draws every gene's runs from the parts, in order, into the layers and raw.cellcube:
// one thread draws (reads the parts' runs, checks their order) while the caller writes
// the batch before (checks the records, writes entries, records and offsets); alone when
// no second thread can be had. The bytes are the same either way.
Status StreamEntries(const StoreData& meta, const std::vector<StreamedPart>& parts,
                     LayerWriter& layers, RawWriter& raw,
                     const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t n_genes = meta.n_genes(), n_groups = meta.n_groups();
  std::vector<int64_t> indptr(static_cast<size_t>(n_genes) + 1, 0);
  std::vector<Batch> batches(2);
  for (Batch& b : batches) b.buf.Reserve(kBatchEntries + kBatchEntries / 4);
  auto write = [&](Batch* b) -> Status {
    CC_RETURN_IF_ERROR(WriteBatch(b, layers, raw, &indptr));
    if (progress) progress(b->first + static_cast<int64_t>(b->start.size()), n_genes);
    return Status::Ok();
  };
  Status written;
  BatchQueue queue(&batches);
  const bool together = RunTogether(2, [&](int worker) {
    if (worker == 1) {  // draws
      Status s;
      for (int64_t gene = 0; gene < n_genes && s.ok();) {
        Batch* b = queue.TakeEmpty();
        if (!b) break;  // the writer failed
        Result<int64_t> next = DrawBatch(parts, gene, n_genes, n_groups, b);
        if (!next.ok()) {
          s = next.status();
          break;
        }
        gene = *next;
        queue.PutFull(b);
      }
      queue.FinishDrawing(std::move(s));
      return;
    }
    while (Batch* b = queue.TakeFull()) {
      written = write(b);
      if (!written.ok()) {
        queue.StopWriting();
        return;
      }
      queue.PutEmpty(b);
    }
  });
  if (together) {
    CC_RETURN_IF_ERROR(written);
    CC_RETURN_IF_ERROR(queue.draw_status());
  } else {
    for (int64_t gene = 0; gene < n_genes;) {
      CC_ASSIGN_OR_RETURN(gene, DrawBatch(parts, gene, n_genes, n_groups, &batches[0]));
      CC_RETURN_IF_ERROR(write(&batches[0]));
    }
  }
  CC_RETURN_IF_ERROR(raw.Finish());
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
    for (int64_t k = s_.indptr[gene_]; k < s_.indptr[gene_ + 1]; ++k) {
      if (!s_.has_histograms()) {
        out->Add(s_.group[k] + group_offset, s_.nnz[k], s_.sum[k], s_.m2[k]);
        continue;
      }
      const uint64_t begin = k == 0 ? 0 : s_.hist_end[k - 1];
      out->Add(s_.group[k] + group_offset, s_.nnz[k], s_.sum[k], s_.m2[k],
               s_.hist_data.data() + begin, s_.hist_end[k] - begin);
    }
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

Status WriteStreamedStore(const StoreData& meta, int64_t n_entries, uint64_t n_hist_bytes,
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
  RawWriter raw(**w, meta, n_hist_bytes);
  Status s = WriteMetadata(**w, meta);
  if (s.ok()) s = layers.Create();
  if (s.ok()) s = raw.Create();
  if (s.ok()) s = StreamEntries(meta, parts, layers, raw, progress);
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
  return WriteStreamedStore(store, store.n_entries(), store.hist_data.size(), {{&source, 0}}, *out,
                            {});
}

}  // namespace cellcube
