// Read-only access to a cellcube store (docs/FORMAT.md) for queries: its metadata
// (groups, genes, datasets, the measured-gene bits), read once into memory, and, for
// the query engine, its entries, memory-mapped and read in place. Formats 1 and 2.
//
// Validation (docs/FORMAT.md, "Validation rules"): Open costs in proportion to the
// metadata, not the entries. It checks the metadata (sizes, codes, datasets, measured
// genes), every entry array's dtype, offset and length against the file size and the
// shapes, and indptr as a whole, so no entry lies outside the file. Each gene's entries
// are checked the first time a read touches them, and a read can reach entries only
// through the checked path of src/store/store_entries.h, which is not part of this
// public API. Arrays a tool re-saved compressed or chunked (h5py, anndata) are read into
// memory at open instead of mapped.
//
// Ownership and thread safety: a StoreReader owns its mapping and is immutable after
// Open except for the entries' verdicts and cached copies, which are synchronised; share
// it between threads through the shared_ptr (no HDF5 call happens after Open). The
// mapping stays valid while the reader lives even if the file is renamed over or
// deleted; cellcube replaces stores atomically (rename), never in place.
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

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"

namespace cellcube {

class StoreEntries;  // the entry arrays and their checks (src/store/store_entries.h)

struct StoreOpenOptions {
  bool isolate = false;       // see "Isolation" above
  uint64_t memory_limit = 0;  // for the isolated child; 0 = MemoryLimitFor(file size)
  // Copies the mapped entry and histogram arrays into one block of anonymous memory on
  // 2 MB pages (transparent huge pages) when they take at most `preload_max` bytes (0:
  // three quarters of the memory available): reads then take no page faults and few
  // TLB misses (docs/BENCHMARKS.md). Otherwise the mapping is read, as without; the
  // reader's preload() says which, and why.
  bool preload = false;
  uint64_t preload_max = 0;
};

// What StoreOpenOptions::preload did.
struct PreloadReport {
  bool asked = false;
  bool done = false;
  uint64_t bytes = 0;       // the arrays' bytes: copied when done
  uint64_t huge_bytes = 0;  // of the copy, how much the kernel put on 2 MB pages
  double seconds = 0;       // the copy's time
  std::string why_not;      // asked and not done: why (one clause)
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
  int64_t n_entries() const;
  int64_t n_datasets() const { return static_cast<int64_t>(meta_.datasets.size()); }

  // The store's format version: 2 as cellcube writes it, or 1 (docs/FORMAT.md).
  int format_version() const { return format_version_; }

  // Gene g's number of entries (stored (group, gene) statistics), 0 <= g < n_genes().
  int64_t GeneEntries(int64_t gene) const;
  // Every gene's entries checked against the rules above (what `cellcube info --check`
  // runs); Corrupt naming the first broken entry. Thread-safe.
  [[nodiscard]] Status CheckAllGenes() const;
  // Whether the second moment is format 1's sumsq (Σv²) rather than m2.
  bool second_moment_is_sumsq() const { return format_version_ == 1; }

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

  // How many of the five entry arrays are read in place from the mapping (5 for a store
  // as cellcube writes it).
  int arrays_mapped() const;
  // What the open's preload did (StoreOpenOptions::preload).
  const PreloadReport& preload() const;

 private:
  struct Internals;  // the open: checks the file and fills in the members (reader.cc)
  StoreReader();
  friend struct Internals;
  friend const StoreEntries& EntriesOf(const StoreReader& reader);

  std::string path_;
  uint64_t file_size_ = 0;
  uint64_t file_inode_ = 0;
  int64_t file_mtime_ns_ = 0;
  std::unique_ptr<StoreEntries> entries_;  // the mapping, the entry arrays, their checks
  StoreData meta_;
  StringList gene_ids_, gene_symbols_;
  int format_version_ = 0;
  MeasuredBits measured_;
  std::vector<int64_t> dataset_begin_, dataset_end_;
};

}  // namespace cellcube
