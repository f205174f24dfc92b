// Streaming a store's entries gene by gene (internal to src/store): what build, add,
// remove and merge hand to the writer, so no command holds a whole store in memory.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "cellcube/status.h"

namespace cellcube {

// Entries gathered for writing, one vector per statistic, and each entry's histogram
// record (histogram/record.h; empty in a store without histograms and for a dataset
// with negative values): entry k's record is hist[hist_end[k - 1], hist_end[k]).
struct EntryBuffer {
  std::vector<int64_t> group;
  std::vector<uint32_t> nnz;
  std::vector<double> sum;
  std::vector<double> m2;  // Σ(v − mean)² over the group's cells
  std::vector<uint64_t> hist_end;
  std::vector<uint8_t> hist;

  size_t size() const { return group.size(); }
  void Reserve(size_t n) {
    group.reserve(n);
    nnz.reserve(n);
    sum.reserve(n);
    m2.reserve(n);
    hist_end.reserve(n);
  }
  // An entry whose record is empty.
  void Add(int64_t g, uint32_t n, double s, double q) {  // q = m2
    group.push_back(g);
    nnz.push_back(n);
    sum.push_back(s);
    m2.push_back(q);
    hist_end.push_back(hist.size());
  }
  // An entry and its record's `length` bytes at `record`.
  void Add(int64_t g, uint32_t n, double s, double q, const uint8_t* record, size_t length) {
    hist.insert(hist.end(), record, record + length);
    Add(g, n, s, q);
  }
  // The record of entry k.
  const uint8_t* RecordOf(size_t k) const { return hist.data() + RecordStart(k); }
  uint64_t RecordStart(size_t k) const { return k == 0 ? 0 : hist_end[k - 1]; }
  uint64_t RecordLength(size_t k) const { return hist_end[k] - RecordStart(k); }
  void Clear() {
    group.clear();
    nnz.clear();
    sum.clear();
    m2.clear();
    hist_end.clear();
    hist.clear();
  }
};

inline constexpr int64_t kNoGene = std::numeric_limits<int64_t>::max();

// One part of a store being written (a dataset just aggregated, an existing store):
// its entries as runs, at most one per gene, in ascending order of the output's genes,
// groups ascending within a run.
class RunSource {
 public:
  virtual ~RunSource() = default;
  // The output gene of the next run; kNoGene once every run was taken.
  virtual int64_t next_gene() const = 0;
  // Appends the next run's entries, groups shifted by `group_offset`, and advances.
  // Errors name what is broken (a damaged store, a failed read).
  [[nodiscard]] virtual Status TakeRun(int64_t group_offset, EntryBuffer* out) = 0;
};

// A part of the output: its entries and where its groups start among the output's.
struct StreamedPart {
  RunSource* source = nullptr;
  int64_t group_offset = 0;
};

}  // namespace cellcube
