// The aggregated entries of datasets, held on disk until the store is written
// (internal to src/store). Memory stays bounded whatever the number of datasets: each
// dataset's runs are appended to one unnamed temporary file beside the output, then
// read back gene by gene, every dataset at once, through small windows.
//
// A run (the file's own format, read only by this process): a header (gene, entries,
// their bytes, bytes of histogram records), the entries (group steps and nnz as
// varints, sum and m2 as they are: spill.cc), then their histogram records
// (histogram/record.h) in entry order, each as long as its first byte and nnz say.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "store/entry_stream.h"

namespace cellcube {

// One (group, gene) entry as spilled: the group within its dataset.
struct SpillRecord {
  int32_t group = 0;
  uint32_t nnz = 0;
  double sum = 0;
  double m2 = 0;  // Σ(v − mean)² over the group's cells
};
static_assert(sizeof(SpillRecord) == 24);

class SpillFile {
 public:
  // An unnamed file (O_TMPFILE) in `dir`: it vanishes with the last descriptor, so no
  // exit path, SIGKILL included, leaves it behind.
  static Result<std::unique_ptr<SpillFile>> Create(const std::string& dir);
  ~SpillFile();
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Appends one gene's entries (`gene` in the dataset's own numbering) and their
  // histogram records (`hist_bytes` bytes at `hist`; none without histograms). Buffered.
  [[nodiscard]] Status AppendRun(uint32_t gene, const SpillRecord* records, uint32_t count,
                                 const uint8_t* hist, uint64_t hist_bytes);
  // Writes out the buffer; offset() is then where the next run starts.
  [[nodiscard]] Status Flush();
  uint64_t offset() const { return written_ + used_; }
  // Entries appended so far, and bytes of their histogram records.
  uint64_t records() const { return records_; }
  uint64_t hist_bytes() const { return hist_bytes_; }
  int fd() const { return fd_; }

 private:
  SpillFile(int fd, std::string dir) : fd_(fd), dir_(std::move(dir)) {}
  int fd_;
  std::string dir_;
  uint64_t written_ = 0;
  uint64_t records_ = 0;
  uint64_t hist_bytes_ = 0;
  std::vector<char> buffer_;  // its first used_ bytes are not written yet
  size_t used_ = 0;
};

// The runs of one dataset, [begin, end) of a flushed SpillFile, read through a window
// of `window_bytes`; its genes are mapped to the output's by `gene_map`, which must
// make them ascending (the order they were spilled in). Consumed pages are released
// from the file as it goes (hole punching), so spill and store never both hold an
// entry on disk for long. With `drop_records` (a dataset found to have negative values,
// which is not binned) the entries are taken with empty records.
class SpillSegment : public RunSource {
 public:
  static Result<std::unique_ptr<SpillSegment>> Open(int fd, uint64_t begin, uint64_t end,
                                                    const std::vector<int32_t>* gene_map,
                                                    size_t window_bytes, bool drop_records);
  int64_t next_gene() const override { return next_gene_; }
  [[nodiscard]] Status TakeRun(int64_t group_offset, EntryBuffer* out) override;

 private:
  SpillSegment(int fd, uint64_t begin, uint64_t end, const std::vector<int32_t>* gene_map,
               size_t window_bytes, bool drop_records);
  [[nodiscard]] Status Ensure(size_t bytes);
  [[nodiscard]] Status ReadHeader();
  [[nodiscard]] Status TakeRecords(size_t first, EntryBuffer* out);

  int fd_;
  uint64_t end_;
  const std::vector<int32_t>* gene_map_;
  std::vector<char> window_;
  uint64_t window_pos_;  // file offset of window_[0]
  size_t window_len_ = 0;
  uint64_t cursor_;    // file offset of the next unread byte
  uint64_t released_;  // file offset up to which pages were released
  int64_t next_gene_ = kNoGene;
  uint32_t next_count_ = 0;
  uint64_t next_entry_bytes_ = 0;
  uint64_t next_hist_bytes_ = 0;
  bool drop_records_;
};

}  // namespace cellcube
