// An existing store read as a stream of entries (internal to src/store), for add,
// remove and merge: its metadata is read through HDF5 and the file closed again; the
// entry arrays are then read with pread through small windows at the offsets HDF5
// reported, so memory stays bounded whatever the store's size. Every entry is checked
// as it is read (group in range and ascending within a gene, only in genes its
// dataset measured, nnz at most the group's cells, finite sums, a valid histogram
// record); indptr and hist_indptr as a whole when streaming starts. A store another
// tool re-saved compressed is read into memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"
#include "store/entry_stream.h"

namespace cellcube {

class StoreFileSource : public RunSource {
 public:
  // Opens `path` and reads its metadata into *meta (entry vectors left empty).
  static Result<std::unique_ptr<StoreFileSource>> Open(const std::string& path, StoreData* meta);
  ~StoreFileSource() override;

  int64_t n_entries() const { return n_entries_; }
  // Whether it has histograms (docs/FORMAT.md), and the bytes of all its records: every
  // run carries its entries' records, each checked as read (histogram::ReadRecord).
  bool has_histograms() const;
  uint64_t hist_bytes() const;

  // Starts streaming: `gene_map` maps the store's genes to the output's (-1 = leave
  // out; those genes must have no kept entries), ascending order of output genes is the
  // run order; `group_map` maps groups to the output's (-1 = leave out) or, when null,
  // groups keep their number plus TakeRun's offset. `window_bytes` per array. With
  // `keep_open` false the file is opened for each window read (for merges of more
  // stores than file descriptors). The maps must outlive the source. Restartable.
  [[nodiscard]] Status Start(const std::vector<int32_t>* gene_map,
                             const std::vector<int32_t>* group_map, size_t window_bytes,
                             bool keep_open);

  int64_t next_gene() const override;
  [[nodiscard]] Status TakeRun(int64_t group_offset, EntryBuffer* out) override;

  struct Impl;

 private:
  explicit StoreFileSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int64_t n_entries_ = 0;
};

}  // namespace cellcube
