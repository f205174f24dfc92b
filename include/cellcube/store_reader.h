// Read-only access to a cellcube store (docs/FORMAT.md) for queries: the file is
// memory-mapped and the three statistics layers with their shared indices/indptr are
// read in place, at the file offsets the HDF5 library reports; the metadata (groups,
// genes, datasets, the measured-gene bits) is read once into memory. Formats 1 and 2.
//
// Validation (SPEC §10): Open costs in proportion to the metadata, not the entries. It
// checks the metadata (sizes, codes, datasets, measured genes), every array's dtype,
// offset and length against the file size and the shapes, and indptr as a whole
// (monotone from 0 to the number of entries), so no entry lies outside the file. A
// gene's entries are checked the first time something reads them (CheckEntries): groups
// in range and ascending, only in genes their dataset measured, nnz a count of at most
// the group's cells, finite sums, non-negative m2. A read of a few datasets checks only
// their entries in each gene (DatasetEntries, found by one deterministic search that the
// scan repeats); others check the whole gene. The verdicts are kept per gene and per
// (gene, dataset), so a damaged entry is refused by every reader that reads it and good
// ones are checked once. Arrays a tool
// re-saved compressed or chunked (h5py, anndata) are not in place: they are read into
// memory at open instead, as are arrays whose offset is not aligned to their element.
//
// Ownership and thread safety: a StoreReader owns its mapping and is immutable after
// Open except for the verdicts, which are atomics; share it between threads
// through the shared_ptr (no HDF5 call happens after Open). The mapping stays valid
// while the reader lives even if the file is renamed over or deleted; cellcube replaces
// stores atomically (rename), never in place.
// Errors: Open returns NotFound for a missing file, Corrupt for a damaged store,
// Unsupported for a store format it does not know, IoError for a failed mmap.
//
// Isolation: libhdf5 itself crashes or allocates without bound on some damaged
// metadata (docs/RELIABILITY.md). A long-lived caller (the server, the Python module)
// opens with `isolate`: the store is first opened in a forked child process under a
// memory limit, and only if that succeeds in this process, so such a file yields
// Corrupt (or OutOfMemory) instead of killing the caller. It costs one fork and a
// second pass over the HDF5 part of the open (metadata and array offsets).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store.h"

namespace cellcube {

// The element type of a store array.
enum class ArrayType { kInt32, kInt64, kUInt16, kUInt32, kFloat32, kFloat64 };
const char* ArrayTypeName(ArrayType t);

// The ArrayType of element type T (a compile error for a type no store array holds).
template <typename T>
constexpr ArrayType ArrayTypeOf() {
  if constexpr (std::is_same_v<T, int32_t>)
    return ArrayType::kInt32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return ArrayType::kInt64;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return ArrayType::kUInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return ArrayType::kUInt32;
  else if constexpr (std::is_same_v<T, float>)
    return ArrayType::kFloat32;
  else {
    static_assert(std::is_same_v<T, double>, "no store array holds this element type");
    return ArrayType::kFloat64;
  }
}

// A read-only 1-D array: in the mapped file or owned by the reader.
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

// The entry arrays a scan reads, in the store's layout (StoreReader's accessors): the
// store's own, in the mapping, or an EntryCopy's.
struct EntryArrays {
  ArrayView indptr, indices, nnz, sum, second;
  // Every entry in them was checked (an EntryCopy's); else StoreReader::GeneChecked and
  // DatasetEntries say which entries of the mapping may be read.
  bool all_checked = false;
};

class StoreReader;

// Some genes' entries in a few datasets, read out of the file into memory by
// StoreReader::PrepareRead and checked on the way: the store's layout with an indptr
// over all its genes, empty for the genes and datasets not copied. Owns its memory;
// immutable once filled, so any thread may read it.
class EntryCopy {
 public:
  EntryCopy();
  ~EntryCopy();
  EntryCopy(const EntryCopy&) = delete;
  EntryCopy& operator=(const EntryCopy&) = delete;

  const EntryArrays& arrays() const { return arrays_; }
  size_t bytes() const;

 private:
  friend class StoreReader;
  struct Memory;
  // Reads and checks the entries of `genes` (ascending, each once) in `datasets`
  // (ascending by their groups) through `fd`, at the offsets the arrays have in the
  // mapping that starts at `map`. Corrupt when an entry breaks the rules (without
  // naming it: the reader then checks its read in place).
  [[nodiscard]] Status Fill(const StoreReader& r, int fd, const void* map,
                            const std::vector<int32_t>& genes,
                            const std::vector<int32_t>& datasets);

  std::unique_ptr<Memory> memory_;
  EntryArrays arrays_;
};

struct StoreOpenOptions {
  bool isolate = false;       // see "Isolation" above
  uint64_t memory_limit = 0;  // for the isolated child; 0 = MemoryLimitFor(file size)
};

class StoreReader {
 public:
  static Result<std::shared_ptr<const StoreReader>> Open(const std::string& path,
                                                         const StoreOpenOptions& options = {});
  ~StoreReader();
  StoreReader(const StoreReader&) = delete;
  StoreReader& operator=(const StoreReader&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t file_inode() const { return file_inode_; }
  int64_t file_mtime_ns() const { return file_mtime_ns_; }

  // The metadata, as LoadStore reads it, without the entry arrays and the gene names:
  // `columns` (dataset, cell_type, then the group-by columns), `labels`, `codes` (-1 =
  // NA), `n_cells`, `datasets` (their measured genes: Measured()). Its gene_ids and
  // gene_symbols are empty: the names are gene_ids() and gene_symbols().
  const StoreData& meta() const { return meta_; }
  int64_t n_groups() const { return meta_.n_groups(); }
  int64_t n_genes() const { return static_cast<int64_t>(gene_ids_.size()); }
  // Gene g's id (the var index) and symbol ("" when unknown), read in place from the
  // mapping when the store holds them as fixed-width strings (as cellcube writes them).
  const StringList& gene_ids() const { return gene_ids_; }
  const StringList& gene_symbols() const { return gene_symbols_; }
  int64_t n_entries() const { return n_entries_; }
  int64_t n_datasets() const { return static_cast<int64_t>(meta_.datasets.size()); }

  // The store's format version: 2 as cellcube writes it, or 1 (docs/FORMAT.md).
  int format_version() const { return format_version_; }

  // The entries, CSC by gene: gene g's entries are [indptr[g], indptr[g + 1]);
  // `indices` (int32 or int64) holds each entry's group. Format 2: `nnz` uint16 or
  // uint32, `sum` float64 and `second_moment` (m2) float32 as cellcube writes them (either
  // float width is read). Format 1: `nnz` uint32, `sum` and `second_moment` (sumsq, Σv²)
  // both float32 or both float64. Read a gene's entries only after CheckEntries
  // succeeded for them: the whole gene when GeneChecked(gene), else only
  // DatasetEntries(gene, d) of the datasets d it was asked for.
  const ArrayView& indptr() const { return indptr_; }
  const ArrayView& indices() const { return indices_; }
  const ArrayView& nnz() const { return nnz_; }
  const ArrayView& sum() const { return sum_; }
  const ArrayView& second_moment() const { return second_; }
  bool second_moment_is_sumsq() const { return format_version_ == 1; }

  // Checks gene g's entries against the rules above the first time it is called for g
  // and remembers the verdict; Corrupt naming the first broken entry. Thread-safe.
  [[nodiscard]] Status CheckGene(int64_t gene) const;
  // Whether CheckGene found all of gene g's entries good (then any search of its
  // ascending groups finds the same entries).
  bool GeneChecked(int64_t gene) const;
  // The entries of `gene` a read of `datasets` (dataset indices) may touch, checked once
  // each (on every core when they are many); the error is the first damaged gene in the
  // order given. When the datasets are few (at most 4, and an eighth of the store's) and each
  // dataset's groups are consecutive, only DatasetEntries(gene, d) of the datasets d that
  // measured the gene are checked, with their neighbours on both sides; otherwise the
  // whole gene (CheckGene). Thread-safe.
  [[nodiscard]] Status CheckEntries(const std::vector<int32_t>& genes,
                                    const std::vector<int32_t>& datasets) const;
  // Where a read of `genes` in `datasets` finds entries that are safe to read. A read of
  // many genes (a DE, markers) in a few datasets reads a copy of those datasets'
  // entries in every gene they measured: made once with batched reads and checked on
  // the way (EntryCopy), then kept for the next such reads (up to 256 MB of copies,
  // the least recently used dropped first). Such a read touches a little of each gene,
  // scattered through the file: on a cold mapping every piece costs page faults, and
  // even on a warm one the copy is compact. Any other read is checked in place
  // (CheckEntries) and reads the mapping. `copy` keeps a copy alive while it is read.
  // Errors as CheckEntries (a damaged entry the copy met but the read does not touch
  // is no error), and IoError when the file cannot be read. Thread-safe.
  struct PreparedRead {
    EntryArrays arrays;
    std::shared_ptr<const EntryCopy> copy;  // null: the mapping
  };
  [[nodiscard]] Result<PreparedRead> PrepareRead(const std::vector<int32_t>& genes,
                                                 const std::vector<int32_t>& datasets) const;
  // The store's own entry arrays, in the mapping.
  EntryArrays arrays() const { return {indptr_, indices_, nnz_, sum_, second_, false}; }
  // CheckGene for every gene (what `cellcube info --check` runs).
  [[nodiscard]] Status CheckAllGenes() const;

  // Entries [begin, end) of one gene.
  struct EntryRange {
    int64_t begin = 0, end = 0;
  };
  // The entries of `gene` whose groups lie in dataset d's groups (dataset_group_begin()
  // [d] to dataset_group_end()[d]): two binary searches of the gene's groups, a pure
  // function of the file, so the check and the scan agree on the range even in a
  // damaged gene. Empty when the datasets' groups are not consecutive.
  EntryRange DatasetEntries(int64_t gene, int64_t dataset) const;

  // Whether dataset d measured gene g.
  bool Measured(int64_t dataset, int64_t gene) const { return measured_.Get(dataset, gene); }
  const MeasuredBits& measured() const { return measured_; }
  // Per group, its dataset (the code of column 0).
  const std::vector<int32_t>& group_dataset() const { return meta_.codes[0]; }
  // When every dataset's groups are consecutive rows (as cellcube writes them), the
  // groups of dataset d are [dataset_group_begin[d], dataset_group_end[d]); empty
  // vectors otherwise.
  const std::vector<int64_t>& dataset_group_begin() const { return dataset_begin_; }
  const std::vector<int64_t>& dataset_group_end() const { return dataset_end_; }

  // How many of the five arrays are read in place from the mapping (5 for a store as
  // cellcube writes it).
  int arrays_mapped() const;

 private:
  struct Internals;  // the open: checks the file and fills in the members (reader.cc)
  struct Storage;    // the file's mapping and the arrays read into memory (reader.cc)
  StoreReader();
  friend struct Internals;

  std::string path_;
  uint64_t file_size_ = 0;
  uint64_t file_inode_ = 0;
  int64_t file_mtime_ns_ = 0;
  std::unique_ptr<Storage> storage_;  // what the array views point into
  StoreData meta_;
  StringList gene_ids_, gene_symbols_;
  int64_t n_entries_ = 0;
  int format_version_ = 0;
  ArrayView indptr_, indices_, nnz_, sum_, second_;
  MeasuredBits measured_;
  // Per gene: 0 = entries not checked yet, 1 = good, 2 = damaged.
  std::unique_ptr<std::atomic<uint8_t>[]> gene_verdict_;
  // Checks entries `range` of `gene`, all of whose groups must lie in
  // [group_begin, group_end), with the entries on either side outside it.
  Status (*check_range_)(const StoreReader&, int64_t gene, EntryRange range, int64_t group_begin,
                         int64_t group_end) = nullptr;
  // Whether a read of n datasets is checked per (gene, dataset); makes the verdict bits.
  bool ChecksByDataset(size_t n_datasets_read) const;
  Status CheckRead(const std::vector<int32_t>& genes, const std::vector<int32_t>& datasets) const;
  bool DatasetChecked(int64_t gene, int64_t dataset) const;
  void MarkDatasetChecked(int64_t gene, int64_t dataset) const;
  static constexpr size_t kCopyBudgetBytes = size_t{256} << 20;
  // Whether PrepareRead reads a copy of `datasets` (ascending by their groups).
  bool CopyPays(size_t n_genes_read, const std::vector<int32_t>& datasets) const;
  // The cached copy of `datasets`, or a new one (null when it met damage).
  Result<std::shared_ptr<const EntryCopy>> CopyOf(const std::vector<int32_t>& datasets) const;
  Status CheckDatasetEntries(int64_t gene, int64_t dataset) const;
  std::vector<int64_t> dataset_begin_, dataset_end_;
};

// Calls f(Index{}, Nnz{}, Sum{}, Second{}): value-initialised scalars of the element types
// of indices(), nnz(), sum() and second_moment(), so that a loop over entries is compiled
// once per layout instead of converting every element. `f` returns one type for all.
template <typename F>
decltype(auto) VisitEntryTypes(const StoreReader& s, F&& f) {
  auto second = [&](auto index, auto nnz, auto sum) -> decltype(auto) {
    if (s.second_moment().type == ArrayType::kFloat64) return f(index, nnz, sum, double{});
    return f(index, nnz, sum, float{});
  };
  auto sum = [&](auto index, auto nnz) -> decltype(auto) {
    if (s.sum().type == ArrayType::kFloat64) return second(index, nnz, double{});
    return second(index, nnz, float{});
  };
  auto nnz = [&](auto index) -> decltype(auto) {
    if (s.nnz().type == ArrayType::kUInt16) return sum(index, uint16_t{});
    return sum(index, uint32_t{});
  };
  if (s.indices().type == ArrayType::kInt64) return nnz(int64_t{});
  return nnz(int32_t{});
}

}  // namespace cellcube
