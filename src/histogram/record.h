// One entry's histogram as stored (docs/FORMAT.md "Histograms"): a record of bytes whose
// length follows from its first byte and the entry's nnz, in one of two forms, the
// shorter one (the list on a tie), so that equal histograms always give equal bytes:
//
//   list   nnz bytes, each a bin (0..63), ascending: one byte per expressing cell.
//   range  0x40 | lo, hi, then hi - lo + 1 counts as LEB128 varints (bins lo..hi; the
//          counts of lo and hi are above 0).
//
// An entry with nnz = 0 (and every entry of a dataset without histograms) has an empty
// record. Decoding checks everything it reads: a record that is cut short, out of order,
// or whose counts do not add up to nnz is refused.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "histogram/histogram.h"

namespace cellcube::histogram {

// Appends the record of `bins` (which must add up to `nnz`) to `out`.
void AppendRecord(const Counts& bins, uint64_t nnz, std::vector<uint8_t>* out);

// The same record from the bins of `n` cells, `sorted` ascending (one byte each): the
// list form is copied as it is, without counting the bins (the build's small groups).
void AppendSortedRecord(const uint8_t* sorted, size_t n, std::vector<uint8_t>* out);

// The record's length in bytes, as AppendRecord would write it.
size_t RecordLength(const Counts& bins, uint64_t nnz);

// The record of an entry of `nnz` cells at `p` (at most `avail` bytes there): adds its
// bins into `bins` (when not null) and returns its length, or 0 with `*why` set when the
// record is damaged. An entry with nnz = 0 has length 0 and no error.
size_t ReadRecord(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins, const char** why);

// The length of the record at `p` without adding it (checked as ReadRecord checks it).
inline size_t SkipRecord(const uint8_t* p, size_t avail, uint64_t nnz, const char** why) {
  return ReadRecord(p, avail, nnz, nullptr, why);
}

// The length of a record that was checked (ReadRecord) before: from its form alone,
// never past `avail`.
inline size_t CheckedRecordLength(const uint8_t* p, size_t avail, uint64_t nnz) {
  if (nnz == 0 || avail == 0) return 0;
  if (p[0] < kBins) return static_cast<size_t>(nnz) < avail ? static_cast<size_t>(nnz) : avail;
  if (avail < 2) return avail;
  const size_t counts = static_cast<size_t>(p[1]) - (p[0] & 0x3f) + 1;
  size_t at = 2;
  for (size_t c = 0; c < counts && at < avail; ++at)
    if (!(p[at] & 0x80)) ++c;
  return at;
}

// Adds a checked record's bins into `bins`; returns its length.
inline size_t AddCheckedRecord(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins) {
  if (nnz == 0 || avail == 0) return 0;
  if (p[0] < kBins) {
    const size_t n = static_cast<size_t>(nnz) < avail ? static_cast<size_t>(nnz) : avail;
    for (size_t k = 0; k < n; ++k) ++(*bins)[p[k] & (kBins - 1)];
    return n;
  }
  const char* why = nullptr;
  const size_t n = ReadRecord(p, avail, nnz, bins, &why);
  return why ? CheckedRecordLength(p, avail, nnz) : n;
}

}  // namespace cellcube::histogram
