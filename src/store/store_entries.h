// A StoreReader's entries (internal to src/store and the query engine's scans): the
// mapped entry arrays, their checks, and the one way to read them, EntryRead, which
// hands out only ranges of entries that were checked.
//
// Validation (docs/FORMAT.md, "Validation rules"): the arrays' types, lengths and
// extents are checked at open (store_arrays.h), indptr as a whole (ascending from 0 to
// the number of entries), so no entry lies outside the file. A gene's entries are
// checked the first time something reads them: groups in range and ascending, only in
// genes their dataset measured, nnz a count of at most the group's cells, finite sums,
// non-negative m2. A read of a few datasets checks only their entries in each gene
// (DatasetEntries, found by one deterministic search that the read repeats); others
// check the whole gene. The verdicts are kept per gene and per (gene, dataset), so a
// damaged entry is refused by every read that reads it and good ones are checked once.
// A read of many genes in a few datasets reads a copy of those datasets' entries
// instead (EntryCopy: made with batched reads and checked on the way, kept for the next
// such reads up to 256 MB, the least recently used dropped first).
//
// Thread safety: immutable after open but for the verdicts (atomics) and the cache of
// copies (a mutex); every method may be called from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "cellcube/h5ad.h"
#include "cellcube/status.h"
#include "cellcube/store_reader.h"
#include "histogram/record.h"
#include "store/store_arrays.h"

namespace cellcube {

// A read-only 1-D array: in the mapped file or owned by the reader (or a copy).
struct ArrayView {
  const void* data = nullptr;
  ArrayType type = ArrayType::kInt32;
  int64_t size = 0;
  bool mapped = false;  // true when read in place from the mapped file

  // The elements as T, which must be the array's own element type: asked as another
  // type, it gives nullptr (no data), never the bytes reinterpreted. Dispatch on `type`
  // first (VisitEntryTypes does it for the entry arrays).
  template <typename T>
  const T* As() const {
    return type == ArrayTypeOf<T>() ? static_cast<const T*>(data) : nullptr;
  }
  // Element i as int64 (int32 or int64 arrays only).
  int64_t IntAt(int64_t i) const {
    return type == ArrayType::kInt64 ? As<int64_t>()[i] : As<int32_t>()[i];
  }
};

// The entry arrays in the store's layout: the store's own, in the mapping, or a copy's.
// Format 2: `nnz` uint16 or uint32, `sum` float64 and `second` (m2) float32 as cellcube
// writes them (either float width is read). Format 1: `nnz` uint32, `sum` and `second`
// (sumsq, Σv²) both float32 or both float64.
struct EntryArrays {
  ArrayView indptr, indices, nnz, sum, second;
  bool all_checked = false;  // every entry in them was checked (a copy's)
};

// Format 3's histogram layer (docs/FORMAT.md "Histograms"), always the store's own
// (a copy of entries reads its records from here): the records, where each gene's
// start, and where each (gene, dataset)'s start within its gene.
struct HistArrays {
  ArrayView data;     // uint8 records
  ArrayView indptr;   // int64[genes + 1]
  ArrayView offsets;  // uint32[genes x datasets]
  bool present() const { return indptr.size > 0; }
};

// Entries [begin, end) of one gene.
struct EntryRange {
  int64_t begin = 0, end = 0;
};

// One gene's entry_offsets (format 3), for the DatasetEntries of many datasets in a row:
// the same ranges, without looking the gene up again per dataset.
struct OffsetRow {
  int64_t begin = 0, n = 0, n_datasets = 0;
  const uint32_t* at = nullptr;
  EntryRange Of(int64_t dataset) const {
    // Clamped into the gene, so that even a damaged offset reads inside it; the checks
    // (CheckEntryOffsets, NeighbourFault) refuse it.
    const int64_t b = std::min<int64_t>(at[dataset], n);
    const int64_t e = dataset + 1 < n_datasets ? std::min<int64_t>(at[dataset + 1], n) : n;
    return {begin + b, begin + std::max(b, e)};
  }
};

// A run of groups [begin, end) a read scans, all of one dataset (-1: not known).
struct GroupRun {
  int64_t begin;
  int64_t end;
  int32_t dataset;
};

class StoreEntries;

// Some genes' entries in a few datasets, read out of the file into memory and checked on
// the way: the store's layout with an indptr over all its genes, empty for the genes and
// datasets not copied. Owns its memory; immutable once filled.
class EntryCopy {
 public:
  EntryCopy();
  ~EntryCopy();
  EntryCopy(const EntryCopy&) = delete;
  EntryCopy& operator=(const EntryCopy&) = delete;

  const EntryArrays& arrays() const { return arrays_; }
  size_t bytes() const;

  // Reads and checks the entries of `genes` (ascending, each once) in `datasets`
  // (ascending by their groups) through `fd`, at the offsets the arrays have in the
  // store's mapping. Corrupt when an entry breaks the rules (without naming it: the
  // reader then checks its read in place).
  [[nodiscard]] Status Fill(const StoreEntries& entries, int fd, const void* map,
                            const std::vector<int32_t>& genes,
                            const std::vector<int32_t>& datasets);

 private:
  struct Memory;
  std::unique_ptr<Memory> memory_;
  EntryArrays arrays_;
};

// A prepared read of some genes in some datasets (StoreEntries::PrepareRead): every
// entry it hands out was checked. Keeps a copy alive while it is read. Movable.
class EntryRead {
 public:
  // The arrays the ranges below index: the store's mapping or a copy.
  const EntryArrays& arrays() const { return arrays_; }
  // The histogram arrays, when the read was prepared with them (else null).
  const HistArrays* hist() const { return hist_; }
  // The copy read (null: the mapping).
  const EntryCopy* copy() const { return copy_.get(); }

  // Calls f(lo, hi) for each run of groups (ascending, disjoint) with the range of
  // `gene`'s entries in it; entries of groups outside the selection may lie within, but
  // only checked entries: across the whole gene when it was checked whole, else within
  // the run's dataset's DatasetEntries, the range its check covered. Runs of datasets
  // that did not measure the gene hold none of its entries and are skipped.
  template <typename Index, typename F>
  void ForEachRun(int64_t gene, const std::vector<GroupRun>& runs, F&& f) const;
  // The same ranges, for runs of a few entries each in many datasets (one cell type in
  // each): each run's range is found from entry_offsets, and touch(lo, hi) is called
  // some runs ahead of f(lo, hi), for the scan to start loading the lines it will read
  // there, so that the cache misses of the runs overlap instead of following one
  // another (docs/QUERY.md). Runs without an entry may be skipped. Without offsets
  // (before format 3) or in a copy, as ForEachRun.
  template <typename Index, typename Touch, typename F>
  void ForEachShortRun(int64_t gene, const std::vector<GroupRun>& runs, Touch&& touch, F&& f) const;

  // The same runs, for a read prepared with histograms: f(lo, hi, p, end) with p the
  // record of entry lo (histogram/record.h), the records of lo + 1, ... following it up
  // to `end`, all checked; f returns where the record of hi - 1 ends. Runs of datasets
  // with negative values (no histograms) are skipped. Index and Nnz must be the arrays'
  // types (VisitEntryTypes).
  template <typename Index, typename Nnz, typename F>
  void ForEachHistRun(int64_t gene, const std::vector<GroupRun>& runs, F&& f) const;

 private:
  friend class StoreEntries;
  template <typename Index, typename Touch, typename F>
  void SearchRunsAhead(int64_t gene, const std::vector<GroupRun>& runs, const OffsetRow& row,
                       Touch&& touch, F&& f) const;
  // The first entry of dataset d in `gene` (of the read's arrays) and where its records
  // start and end.
  template <typename Index>
  void LocateDatasetRecords(int64_t gene, int32_t d, int64_t* first, const uint8_t** begin,
                            const uint8_t** end) const;
  const StoreEntries* entries_ = nullptr;
  EntryArrays arrays_;
  const HistArrays* hist_ = nullptr;
  std::shared_ptr<const EntryCopy> copy_;  // null: the mapping
};

class StoreEntries {
 public:
  explicit StoreEntries(const StoreReader& reader);
  ~StoreEntries();
  StoreEntries(const StoreEntries&) = delete;
  StoreEntries& operator=(const StoreEntries&) = delete;

  // Maps the open file `fd` (`bytes` long); the entries keep fd for their copies.
  [[nodiscard]] Status Map(int fd, uint64_t bytes, const std::string& path);
  const char* map() const { return static_cast<const char*>(map_); }
  uint64_t map_bytes() const { return map_bytes_; }
  // Locates the entry arrays (store_arrays.h), maps those in place or reads them into
  // memory, and checks the layers' shared pattern; with `check_indptr`, also indptr as a
  // whole and ready for reads.
  [[nodiscard]] Status Load(const h5ad::File& file, bool check_indptr);

  const StoreReader& reader() const { return r_; }
  const ArrayView& indptr() const { return a_.indptr; }
  const ArrayView& indices() const { return a_.indices; }
  const ArrayView& nnz() const { return a_.nnz; }
  const ArrayView& sum() const { return a_.sum; }
  const ArrayView& second_moment() const { return a_.second; }
  int64_t n_entries() const { return n_entries_; }
  int arrays_mapped() const;

  // Checks gene g's entries the first time it is called for g and remembers the
  // verdict; Corrupt naming the first broken entry.
  [[nodiscard]] Status CheckGene(int64_t gene) const;
  // Whether CheckGene found all of gene g's entries good.
  bool GeneChecked(int64_t gene) const;
  // The entries of `gene` whose groups lie in dataset d's groups: from entry_offsets
  // (format 3), else two binary searches of the gene's groups; a pure function of the
  // file either way, so the check and the read agree on the range even in a damaged
  // gene. Empty when the datasets' groups are not consecutive.
  EntryRange DatasetEntries(int64_t gene, int64_t dataset) const;
  // Whether the store has entry_offsets and datasets of consecutive groups (OffsetsOf).
  bool has_entry_offsets() const { return offsets_.size > 0 && !r_.dataset_group_begin().empty(); }
  OffsetRow OffsetsOf(int64_t gene) const;
  // The entries of `genes` a read of `datasets` may touch, checked once each (on the
  // pool when they are many); the error is the first damaged gene in the order given.
  // When the datasets are few (at most 4, and an eighth of the store's) and each
  // dataset's groups are consecutive, only DatasetEntries(gene, d) of the datasets d
  // that measured the gene are checked, with their neighbours on both sides; otherwise
  // the whole gene.
  [[nodiscard]] Status CheckEntries(const std::vector<int32_t>& genes,
                                    const std::vector<int32_t>& datasets) const;
  // A read of `genes` in `datasets` that hands out only checked entries: a copy (see
  // above) when many genes of a few datasets are read, else the mapping, checked in
  // place. Errors as CheckEntries (a damaged entry the copy met but the read does not
  // touch is no error), and IoError when the file cannot be read.
  // With `histograms`, the read also hands out the records of those entries (checked
  // too, in place: CheckHistograms); FailedPrecondition when the store has none.
  [[nodiscard]] Result<EntryRead> PrepareRead(const std::vector<int32_t>& genes,
                                              const std::vector<int32_t>& datasets,
                                              bool histograms = false) const;
  const HistArrays& hist() const { return hist_; }
  // The byte span of dataset d's records in `gene`, from hist_offsets, clamped into the
  // gene's records (checked by CheckHistograms).
  void DatasetRecordSpan(int64_t gene, int64_t dataset, uint64_t* begin, uint64_t* end) const;
  // Whether dataset d's values went below 0: its entries have no histograms.
  bool Flagged(int64_t d) const { return flagged_[static_cast<size_t>(d)] != 0; }
  // Checks the histogram records of `genes` in `datasets` (every dataset when the read
  // checks whole genes, as CheckEntries decides), once each (verdict bits per (gene,
  // dataset)): each dataset's records lie where hist_offsets says, each decodes to its
  // entry's nnz, and they end where the next dataset's begin; a dataset with negative
  // values has none. Corrupt naming the store, the gene and the dataset. The entries
  // themselves must have been checked first.
  [[nodiscard]] Status CheckHistograms(const std::vector<int32_t>& genes,
                                       const std::vector<int32_t>& datasets) const;
  // CheckGene for every gene (what `cellcube info --check` runs).
  [[nodiscard]] Status CheckAllGenes() const;
  // StoreOpenOptions::preload, at open before any read (src/store/preload.cc): the mapped
  // arrays copied into huge pages when they take at most `max_bytes` (0: three quarters
  // of the memory available). Never fails: preload_report() says what it did.
  void Preload(uint64_t max_bytes);
  const PreloadReport& preload_report() const { return preload_; }

 private:
  struct Copies;  // the cache of copies (store_entries.cc)
  using CheckRangeFn = Status (*)(const StoreEntries&, int64_t gene, EntryRange range,
                                  int64_t group_begin, int64_t group_end);

  Result<ArrayView> View(const h5ad::File& file, const LocatedArray& a);
  Status CheckSamePattern(const h5ad::File& file, const std::string& path,
                          const LocatedArray& reference, const ArrayView& view);
  Status CheckIndptr() const;
  Result<EntryRead> PrepareEntries(const std::vector<int32_t>& genes,
                                   const std::vector<int32_t>& datasets) const;
  Status LoadHistograms(const h5ad::File& file, const StoreArrays& located);
  Status CheckHistIndptr() const;
  Status CheckHistDataset(int64_t gene, int64_t dataset) const;

  bool ChecksByDataset(size_t n_datasets_read) const;
  Status CheckIndices(const std::vector<int32_t>& genes,
                      const std::vector<int32_t>& datasets) const;
  bool DatasetChecked(int64_t gene, int64_t dataset) const;
  void MarkDatasetChecked(int64_t gene, int64_t dataset) const;
  Status CheckDatasetEntries(int64_t gene, int64_t dataset) const;
  Status CheckEntryOffsets(int64_t gene) const;
  bool CopyPays(size_t n_genes_read, const std::vector<int32_t>& datasets) const;
  Result<std::shared_ptr<const EntryCopy>> CopyOf(const std::vector<int32_t>& datasets) const;

  const StoreReader& r_;
  void* map_ = nullptr;
  uint64_t map_bytes_ = 0;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::vector<std::vector<uint64_t>> owned_;  // arrays read into memory (8-byte aligned)
  EntryArrays a_;
  ArrayView offsets_;  // entry_offsets, uint32[genes x datasets]; empty before format 3
  int64_t n_entries_ = 0;
  CheckRangeFn check_range_ = nullptr;
  // Per gene: 0 = entries not checked yet, 1 = good, 2 = damaged.
  std::unique_ptr<std::atomic<uint8_t>[]> gene_verdict_;
  // Per (gene, dataset), gene-major, a bit: its entries checked good. Made on the first
  // check by dataset, so an open pays nothing for it.
  mutable std::once_flag dataset_bits_made_;
  mutable std::unique_ptr<std::atomic<uint64_t>[]> dataset_good_;
  std::unique_ptr<Copies> copies_;
  HistArrays hist_;
  // Per (gene, dataset), gene-major, a bit: its records checked good.
  mutable std::once_flag hist_bits_made_;
  mutable std::unique_ptr<std::atomic<uint64_t>[]> hist_good_;
  std::vector<uint8_t> flagged_;  // per dataset: values below 0, no histograms
  PreloadReport preload_;
  void* preload_block_ = nullptr;  // the copy (Preload), unmapped with the reader
  uint64_t preload_length_ = 0;
};

// The entries of an open StoreReader.
const StoreEntries& EntriesOf(const StoreReader& reader);

// Calls f(Index{}, Nnz{}, Sum{}, Second{}): value-initialised scalars of the element
// types of the arrays, so that a loop over entries is compiled once per layout instead
// of converting every element. `f` returns one type for all.
template <typename F>
decltype(auto) VisitEntryTypes(const EntryArrays& a, F&& f) {
  auto second = [&](auto index, auto nnz, auto sum) -> decltype(auto) {
    if (a.second.type == ArrayType::kFloat64) return f(index, nnz, sum, double{});
    return f(index, nnz, sum, float{});
  };
  auto sum = [&](auto index, auto nnz) -> decltype(auto) {
    if (a.sum.type == ArrayType::kFloat64) return second(index, nnz, double{});
    return second(index, nnz, float{});
  };
  auto nnz = [&](auto index) -> decltype(auto) {
    if (a.nnz.type == ArrayType::kUInt16) return sum(index, uint16_t{});
    return sum(index, uint32_t{});
  };
  if (a.indices.type == ArrayType::kInt64) return nnz(int64_t{});
  return nnz(int32_t{});
}

namespace entry_read {

// The first k in [from, end) with idx[k] >= target (ascending idx): galloping from
// `from`, so that the many short hops between the runs of a selection (one cell type in
// each of 300 datasets) cost the log of the hop, not of the gene's entries.
template <typename Index>
int64_t Gallop(const Index* idx, int64_t from, int64_t end, Index target) {
  int64_t lo = from, step = 1;
  while (lo + step < end && idx[lo + step] < target) {
    lo += step;
    step <<= 1;
  }
  const int64_t hi = std::min(end, lo + step + 1);
  return std::lower_bound(idx + lo, idx + hi, target) - idx;
}

// The same, for a target likely among the first few entries (a short run's end): the
// first eight are compared at once (no branch to mispredict; vectorised), and only a
// target past them is galloped to.
template <typename Index>
int64_t SearchNear(const Index* idx, int64_t from, int64_t end, Index target) {
  constexpr int64_t kNear = 8;
  if (end - from < kNear) return Gallop(idx, from, end, target);
  int64_t below = 0;  // idx ascends, so the entries below target come first
  for (int64_t k = 0; k < kNear; ++k) below += idx[from + k] < target ? 1 : 0;
  return below < kNear ? from + below : Gallop(idx, from + kNear, end, target);
}

}  // namespace entry_read

template <typename Index, typename F>
void EntryRead::ForEachRun(int64_t gene, const std::vector<GroupRun>& runs, F&& f) const {
  using entry_read::Gallop;
  const StoreReader& s = entries_->reader();
  const auto* idx = arrays_.indices.As<Index>();
  const int64_t n_groups = s.n_groups();
  if (!arrays_.all_checked && !entries_->GeneChecked(gene)) {
    for (const GroupRun& run : runs) {
      if (!s.Measured(run.dataset, gene)) continue;
      const auto [begin, end] = entries_->DatasetEntries(gene, run.dataset);
      const int64_t lo = Gallop(idx, begin, end, static_cast<Index>(run.begin));
      f(lo, Gallop(idx, lo, end, static_cast<Index>(run.end)));
    }
    return;
  }
  const int64_t gene_end = arrays_.indptr.IntAt(gene + 1);
  int64_t from = arrays_.indptr.IntAt(gene);
  for (const GroupRun& run : runs) {
    if (from >= gene_end) break;
    if (run.dataset >= 0 && !s.Measured(run.dataset, gene)) continue;
    int64_t lo = from, hi = gene_end;
    if (run.begin > 0) lo = Gallop(idx, from, gene_end, static_cast<Index>(run.begin));
    if (run.end < n_groups) hi = Gallop(idx, lo, gene_end, static_cast<Index>(run.end));
    f(lo, hi);
    from = hi;
  }
}

template <typename Index, typename Touch, typename F>
void EntryRead::ForEachShortRun(int64_t gene, const std::vector<GroupRun>& runs, Touch&& touch,
                                F&& f) const {
  // A copy has an indptr of its own, which the store's offsets do not index.
  if (copy_ || !entries_->has_entry_offsets()) return ForEachRun<Index>(gene, runs, f);
  // The offsets were checked with the gene, or are the range a dataset's check covered.
  const OffsetRow row = entries_->OffsetsOf(gene);
  SearchRunsAhead<Index>(gene, runs, row, touch, f);
}

// Three steps per run, each a few runs ahead of the next so that the loads it starts
// have arrived when they are needed: locate the run's dataset range and load its first
// groups; search the run's entries there and touch them; f.
template <typename Index, typename Touch, typename F>
void EntryRead::SearchRunsAhead(int64_t gene, const std::vector<GroupRun>& runs,
                                const OffsetRow& row, Touch&& touch, F&& f) const {
  using entry_read::SearchNear;
  const StoreReader& s = entries_->reader();
  const auto* idx = arrays_.indices.As<Index>();
  constexpr size_t kAhead = 16, kRing = 64;  // kRing > 2 * kAhead, a power of two
  EntryRange ring[kRing];                    // per run: its dataset's range, then its own
  // In a gene checked whole, a dataset that did not measure it has no entry there (the
  // rules refuse one), and its range is empty without a test.
  const bool whole = entries_->GeneChecked(gene);
  const size_t n = runs.size();
  for (size_t i = 0; i < n + 2 * kAhead; ++i) {
    if (i < n) {
      const int32_t d = runs[i].dataset;
      const EntryRange r = whole || s.Measured(d, gene) ? row.Of(d) : EntryRange{};
      ring[i % kRing] = r;
      if (r.begin < r.end) {  // the lines a short run's search reads
        __builtin_prefetch(idx + r.begin);
        __builtin_prefetch(idx + std::min(r.begin + 16, r.end - 1));
      }
    }
    if (i >= kAhead && i - kAhead < n) {
      EntryRange& r = ring[(i - kAhead) % kRing];
      if (r.begin < r.end) {
        const GroupRun& run = runs[i - kAhead];
        const int64_t lo = SearchNear(idx, r.begin, r.end, static_cast<Index>(run.begin));
        r = {lo, SearchNear(idx, lo, r.end, static_cast<Index>(run.end))};
        if (r.begin < r.end) touch(r.begin, r.end);
      }
    }
    if (i >= 2 * kAhead) {
      const EntryRange r = ring[(i - 2 * kAhead) % kRing];
      if (r.begin < r.end) f(r.begin, r.end);
    }
  }
}

template <typename Index>
void EntryRead::LocateDatasetRecords(int64_t gene, int32_t d, int64_t* first, const uint8_t** begin,
                                     const uint8_t** end) const {
  const StoreReader& s = entries_->reader();
  if (!arrays_.all_checked && !entries_->GeneChecked(gene)) {
    *first = entries_->DatasetEntries(gene, d).begin;  // the range its check covered
  } else {
    const auto* idx = arrays_.indices.As<Index>();
    *first =
        std::lower_bound(idx + arrays_.indptr.IntAt(gene), idx + arrays_.indptr.IntAt(gene + 1),
                         static_cast<Index>(s.dataset_group_begin()[static_cast<size_t>(d)])) -
        idx;
  }
  uint64_t b = 0, e = 0;
  entries_->DatasetRecordSpan(gene, d, &b, &e);
  const auto* data = hist_->data.As<uint8_t>();
  *begin = data + b;
  *end = data + e;
}

template <typename Index, typename Nnz, typename F>
void EntryRead::ForEachHistRun(int64_t gene, const std::vector<GroupRun>& runs, F&& f) const {
  const auto* nnz = arrays_.nnz.As<Nnz>();
  int32_t dataset = -1;
  int64_t at = 0;  // entry whose record `p` points to
  const uint8_t *p = nullptr, *end = nullptr;
  ForEachRun<Index>(gene, runs, [&](int64_t lo, int64_t hi) {
    if (lo >= hi) return;
    const int32_t d =
        entries_->reader().group_dataset()[static_cast<size_t>(arrays_.indices.As<Index>()[lo])];
    if (entries_->Flagged(d)) return;
    if (d != dataset) {
      dataset = d;
      LocateDatasetRecords<Index>(gene, d, &at, &p, &end);
    }
    for (; at < lo; ++at)  // the records of unselected groups in between
      p += histogram::CheckedRecordLength(p, static_cast<size_t>(end - p), nnz[at]);
    p = f(lo, hi, p, end);
    at = hi;
  });
}

}  // namespace cellcube
