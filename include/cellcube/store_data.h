// The aggregate store's data model (docs/QUERY.md, docs/FORMAT.md; docs/FORMAT.md): per cell group
// and gene, the statistics nnz, sum and m2 (the sum of squared deviations from the group's mean),
// with the groups' metadata (columns, labels, cell counts), the genes, and where each dataset came
// from. StoreData is the in-memory form, for small stores and tests (WriteStore, LoadStore);
// StoreMetadata is what a store holds besides its entries (ReadStoreMetadata); a store's entries
// are read in place by StoreReader (store_reader.h). Building and changing stores on disk is
// store.h's.
//
// Ownership: plain values owning their data, except MeasuredBits::View and
// StringList::FixedWidth, which borrow memory (a store's mapping) that must outlive them.
// Thread safety: const values may be read from any number of threads; the functions may
// run on any thread.
// Errors: one line. Validate gives Corrupt naming the first broken invariant; the reads
// name the store and give NotFound for a missing file, InvalidArgument for an .h5ad that
// is no store, Unsupported for a newer format, Corrupt for a damaged store; WriteStore
// leaves its target untouched on any error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cellcube/status.h"

namespace cellcube {

// The format written. Readers also read formats 1 and 2 (docs/FORMAT.md, "Older formats").
inline constexpr const char* kStoreFormatVersion = "3";

// Which genes each dataset measured, one bit per (dataset, gene): a row of 64-bit words
// per dataset, bit g % 64 of word g / 64 (so a row's bytes, little-endian, are the
// store's packed uns/cellcube/measured row). 1,500 datasets x 60,000 genes take 11 MB.
class MeasuredBits {
 public:
  MeasuredBits() = default;
  // All clear, owned.
  MeasuredBits(int64_t n_datasets, int64_t n_genes)
      : n_genes_(n_genes),
        words_per_row_((n_genes + 63) / 64),
        owned_(static_cast<size_t>(n_datasets * words_per_row_), 0),
        words_(owned_.data()) {}
  // A view of `words` (n_datasets rows), which must outlive it: a store's bits read in
  // place from its mapping (little-endian machines).
  static MeasuredBits View(int64_t n_genes, const uint64_t* words) {
    MeasuredBits b;
    b.n_genes_ = n_genes;
    b.words_per_row_ = (n_genes + 63) / 64;
    b.words_ = words;
    return b;
  }
  MeasuredBits(MeasuredBits&& o) noexcept { *this = std::move(o); }
  MeasuredBits& operator=(MeasuredBits&& o) noexcept {
    const bool owns = o.words_ == o.owned_.data();
    n_genes_ = o.n_genes_;
    words_per_row_ = o.words_per_row_;
    owned_ = std::move(o.owned_);
    words_ = owns ? owned_.data() : o.words_;
    return *this;
  }
  MeasuredBits(const MeasuredBits&) = delete;
  MeasuredBits& operator=(const MeasuredBits&) = delete;

  bool Get(int64_t dataset, int64_t gene) const {
    return (words_[dataset * words_per_row_ + gene / 64] >> (gene & 63)) & 1;
  }
  // Owned bits only.
  void Set(int64_t dataset, int64_t gene) {
    owned_[static_cast<size_t>(dataset * words_per_row_ + gene / 64)] |= uint64_t{1} << (gene & 63);
  }
  uint64_t* mutable_row(int64_t dataset) { return owned_.data() + dataset * words_per_row_; }
  int64_t n_genes() const { return n_genes_; }
  int64_t words_per_row() const { return words_per_row_; }
  const uint64_t* row(int64_t dataset) const { return words_ + dataset * words_per_row_; }

 private:
  int64_t n_genes_ = 0;
  int64_t words_per_row_ = 0;
  std::vector<uint64_t> owned_;
  const uint64_t* words_ = nullptr;
};

// Whether a dataset's transformed values went below 0 (scaled data such as z-scores),
// where nnz counts only the positive values, so frac and sum / nnz (mean_expr) describe
// no cells (docs/FORMAT.md "Negative values"). kUnknown: aggregated before stores
// recorded it.
enum class NegativeValues : int8_t { kUnknown = -1, kNone = 0, kSome = 1 };

// Where one dataset came from and how it was aggregated.
struct DatasetRecord {
  std::string name;
  std::string source;        // path of the .h5ad as given
  int64_t source_size = 0;   // bytes
  int64_t source_mtime = 0;  // seconds since the epoch
  int64_t n_cells = 0;
  int64_t n_genes = 0;  // genes the dataset measured
  int64_t n_groups = 0;
  std::string matrix;            // "raw/X", "X", "layers/counts", ...
  std::string transform;         // "none" | "log1p" | "cp10k_log1p"
  std::string cell_type_column;  // its name in the source
  std::vector<std::string> groupby;
  std::string gene_symbols_column;  // "" when none
  std::string donor_column;         // the source column stored as "donor"; "" = none
  NegativeValues negative_values = NegativeValues::kUnknown;
  // Values above the histograms' upper edge (counted in their top bin); -1: not recorded
  // (a store without histograms, or of an older format).
  int64_t values_above_hist_max = -1;
  std::vector<int32_t> measured_genes;  // indices into StoreData::gene_ids, ascending
};

// The ontology terms a store embeds (docs/ONTOLOGY.md; docs/FORMAT.md "Ontology terms"):
// the terms its ontology-backed columns use and all their ancestors, with the ancestor
// maps as the term-map files give them, and which columns each ontology backs. A value
// of a backed column is the label of the term it matched; a value that is no term's
// label (in the column's ontology) is a plain value. Empty for a store built without
// --ontology.
struct StoreOntologies {
  struct Source {
    std::string name;     // the ids' prefix: "CL", "UBERON", "MONDO"
    std::string version;  // the release, e.g. "v2026-03-26"; "" when unknown
  };
  std::vector<Source> ontologies;
  // Terms, ascending by id; each term's ancestors are terms here too.
  std::vector<std::string> term_ids;
  std::vector<std::string> term_labels;
  std::vector<int32_t> term_ontology;  // per term: into ontologies
  // Per term t: its ancestors ancestors[ancestor_begin[t], ancestor_begin[t + 1]), term
  // indices ascending, with their distances as the file gives them (membership uses the
  // map, never the distance-1 links alone).
  std::vector<int64_t> ancestor_begin{0};
  std::vector<int32_t> ancestors;
  std::vector<int32_t> ancestor_distance;
  // The backed grouping columns (by name) and their ontology (into ontologies).
  std::vector<std::string> columns;
  std::vector<int32_t> column_ontology;

  bool empty() const { return ontologies.empty(); }
  int32_t n_terms() const { return static_cast<int32_t>(term_ids.size()); }
  // Corrupt naming the first broken invariant (sizes, order, ranges).
  [[nodiscard]] Status Validate() const;
};

// Rows are cell groups, columns genes; statistics are CSC (by gene), one entry per
// (group, gene) whose statistics are not all zero.
struct StoreData {
  // Grouping columns: "dataset", "cell_type", then the group-by columns.
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> labels;  // per column: its values (categories)
  std::vector<std::vector<int32_t>> codes;       // per column: per group, -1 = NA
  std::vector<int64_t> n_cells;                  // per group

  std::vector<std::string> gene_ids;      // the union of the datasets' var indexes
  std::vector<std::string> gene_symbols;  // per gene, "" when unknown

  std::vector<int64_t> indptr;  // per gene: its entries are [indptr[g], indptr[g + 1])
  std::vector<int32_t> group;   // per entry: the group (row), ascending within a gene
  std::vector<uint32_t> nnz;    // per entry: cells with value > 0
  std::vector<double> sum;      // per entry: sum of values
  // Per entry: sum over the group's n_cells cells (zeros included) of (v - sum/n_cells)^2,
  // which has no cancellation; Σv² = m2 + sum²/n_cells (docs/FORMAT.md).
  std::vector<double> m2;

  // The histogram layer (docs/FORMAT.md "Histograms"): its upper edge H, 0 when the store
  // has none; then per entry the end of its record in hist_data (histogram/record.h), so
  // entry e's record is hist_data[hist_end[e - 1], hist_end[e]) (from 0 for the first).
  // The entries of a dataset with negative values have empty records.
  double hist_max = 0;
  std::vector<uint64_t> hist_end;
  std::vector<uint8_t> hist_data;
  bool has_histograms() const { return hist_max > 0; }

  // One per value of the "dataset" column, in the same order.
  std::vector<DatasetRecord> datasets;

  // The ontology terms (empty without --ontology).
  StoreOntologies ontology;

  int64_t n_groups() const { return static_cast<int64_t>(n_cells.size()); }
  int64_t n_genes() const { return static_cast<int64_t>(gene_ids.size()); }
  int64_t n_entries() const { return static_cast<int64_t>(group.size()); }

  // Checks every invariant above (sizes, ranges, order); Corrupt error naming the first
  // broken one.
  [[nodiscard]] Status Validate() const;
  // The same, for everything but the entries (which may be empty).
  [[nodiscard]] Status ValidateMetadata() const;
};

// Writes an in-memory store as an .h5ad: to a temporary file beside `path`, flushed and
// synced, then renamed over `path`; on any error the temporary file is removed and
// `path` is untouched.
[[nodiscard]] Status WriteStore(const StoreData& store, const std::string& path);

// Reads a whole store into memory (for tests and small stores; the commands stream).
Result<StoreData> LoadStore(const std::string& path);

// A read-only list of strings: fixed-width, NUL-padded strings in memory someone else
// owns (a store's gene names, in place in its mapping), or strings of its own.
class StringList {
 public:
  StringList() = default;
  explicit StringList(std::vector<std::string> owned) : owned_(std::move(owned)) {
    count_ = owned_.size();
  }
  // `count` strings of `width` bytes each at `data`, which must outlive the list.
  static StringList FixedWidth(const char* data, size_t width, size_t count) {
    StringList l;
    l.fixed_ = data;
    l.width_ = width;
    l.count_ = count;
    return l;
  }
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::string_view operator[](size_t i) const {
    if (!fixed_) return owned_[i];
    const char* p = fixed_ + i * width_;
    size_t n = 0;
    while (n < width_ && p[n] != '\0') ++n;
    return {p, n};
  }
  std::vector<std::string> ToVector() const {
    std::vector<std::string> out;
    out.reserve(count_);
    for (size_t i = 0; i < count_; ++i) out.emplace_back((*this)[i]);
    return out;
  }

 private:
  std::vector<std::string> owned_;
  const char* fixed_ = nullptr;
  size_t width_ = 0;
  size_t count_ = 0;
};

// A store's metadata without its entries: what `info` shows, read in time proportional
// to the metadata.
struct StoreMetadata {
  // Entry vectors and measured_genes lists empty; gene_ids/gene_symbols too when the
  // names were asked for as `names` (below).
  StoreData meta;
  MeasuredBits measured;
  int64_t n_genes = 0;
  StringList gene_ids, gene_symbols;  // when read as lists: views of the mapped file or owned
  int64_t n_entries = 0;
  int format_version = 0;
};
Result<StoreMetadata> ReadStoreMetadata(const std::string& path);

}  // namespace cellcube
