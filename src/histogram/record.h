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
#include <cstring>
#include <vector>

#include "histogram/histogram.h"

namespace cellcube::histogram {

// Appends the record of `bins` (which must add up to `nnz`) to `out`.
void AppendRecord(const Counts& bins, uint64_t nnz, std::vector<uint8_t>* out);

// The same record from the bins of `n` cells, `sorted` ascending (one byte each): the
// list form is copied as it is, without counting the bins (the build's small groups).
void AppendSortedRecord(const uint8_t* sorted, size_t n, std::vector<uint8_t>* out);

// The same record from 64 one-byte counts (the build's groups of 65 to 255 cells), which
// add up to `nnz`, without widening them to Counts.
void AppendByteCountsRecord(const uint8_t* counts, uint64_t nnz, std::vector<uint8_t>* out);

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

// Adds a checked record's bins into `bins`; returns its length. Per run of equal bins in
// a list, and per bin of a range, one addition: a sorted list repeats its bins, and an
// increment per cell would wait on the previous one to the same counter.
inline size_t AddCheckedRecord(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins) {
  if (nnz == 0 || avail == 0) return 0;
  if (p[0] < kBins) {
    const size_t n = static_cast<size_t>(nnz) < avail ? static_cast<size_t>(nnz) : avail;
    size_t k = 0;
    // Eight bins at a time: the bytes where the next bin differs end runs; each run adds
    // its length once (bits of `ends`, found by counting trailing zeros).
    for (; k + 9 <= n; k += 8) {
      uint64_t word, next;
      std::memcpy(&word, p + k, 8);
      std::memcpy(&next, p + k + 1, 8);
      uint64_t ends = word ^ next;  // byte i nonzero: bin i ends a run
      ends = ((ends | (ends >> 4)) & 0x0f0f0f0f0f0f0f0fULL) + 0x0f0f0f0f0f0f0f0fULL;
      ends &= 0x1010101010101010ULL;
      size_t start = 0;
      while (ends) {
        const size_t i = static_cast<size_t>(__builtin_ctzll(ends)) / 8;
        (*bins)[p[k + i] & (kBins - 1)] += i + 1 - start;
        start = i + 1;
        ends &= ends - 1;
      }
      if (start < 8) (*bins)[p[k + 7] & (kBins - 1)] += 8 - start;
    }
    for (; k < n; ++k) ++(*bins)[p[k] & (kBins - 1)];
    return n;
  }
  if (avail < 2) return avail;
  const size_t lo = p[0] & 0x3f, hi = p[1] & (kBins - 1);
  size_t at = 2;
  for (size_t b = lo; b <= hi && at < avail; ++b) {
    uint64_t v = p[at] & 0x7f;
    for (int shift = 7; (p[at++] & 0x80) && at < avail && shift <= 28; shift += 7)
      v |= static_cast<uint64_t>(p[at] & 0x7f) << shift;
    (*bins)[b] += v;
  }
  return at;
}

}  // namespace cellcube::histogram
