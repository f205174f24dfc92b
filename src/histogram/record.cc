#include "histogram/record.h"

#include "util/varint.h"

namespace cellcube::histogram {
namespace {

constexpr uint8_t kRangeTag = 0x40;

void AppendVarint(uint64_t v, std::vector<uint8_t>* out) {
  uint8_t bytes[10];
  out->insert(out->end(), bytes, PutVarint(v, bytes));
}

// The non-empty bins' span [lo, hi]; lo > hi when all are empty.
void Span(const Counts& bins, int* lo, int* hi) {
  *lo = 0;
  while (*lo < kBins && bins[static_cast<size_t>(*lo)] == 0) ++*lo;
  *hi = kBins - 1;
  while (*hi >= 0 && bins[static_cast<size_t>(*hi)] == 0) --*hi;
}

size_t RangeLength(const Counts& bins, int lo, int hi) {
  size_t n = 2;
  for (int b = lo; b <= hi; ++b) n += VarintLength(bins[static_cast<size_t>(b)]);
  return n;
}

size_t ReadList(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins, const char** why) {
  if (nnz > avail) {
    *why = "its histogram record is cut short";
    return 0;
  }
  uint8_t previous = 0;
  for (uint64_t k = 0; k < nnz; ++k) {
    const uint8_t b = p[k];
    if (b >= kBins || b < previous) {
      *why = "its histogram record lists bins out of order";
      return 0;
    }
    previous = b;
  }
  if (bins)  // added only once the whole record is good
    for (uint64_t k = 0; k < nnz; ++k) ++(*bins)[p[k]];
  return static_cast<size_t>(nnz);
}

size_t ReadRange(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins, const char** why) {
  if (avail < 2) {
    *why = "its histogram record is cut short";
    return 0;
  }
  const int lo = p[0] & 0x3f, hi = p[1];
  if (hi < lo || hi >= kBins) {
    *why = "its histogram record has a bad bin range";
    return 0;
  }
  size_t at = 2;
  uint64_t total = 0;
  Counts read{};
  for (int b = lo; b <= hi; ++b) {
    uint64_t v = 0;
    const uint8_t* q = p + at;
    const VarintRead got = GetVarint(&q, p + avail, 5, &v);  // a count below 2^35
    if (got != VarintRead::kOk) {
      *why = got == VarintRead::kTooLong ? "its histogram record has a count that is too large"
                                         : "its histogram record is cut short";
      return 0;
    }
    at = static_cast<size_t>(q - p);
    if ((b == lo || b == hi) && v == 0) {
      *why = "its histogram record has an empty end bin";
      return 0;
    }
    total += v;
    read[static_cast<size_t>(b)] = v;
  }
  if (total != nnz) {
    *why = "its histogram's counts do not add up to its nnz";
    return 0;
  }
  if (bins)
    for (int b = lo; b <= hi; ++b) (*bins)[static_cast<size_t>(b)] += read[static_cast<size_t>(b)];
  return at;
}

}  // namespace

size_t RecordLength(const Counts& bins, uint64_t nnz) {
  if (nnz == 0) return 0;
  int lo, hi;
  Span(bins, &lo, &hi);
  const size_t range = RangeLength(bins, lo, hi);
  return nnz <= range ? static_cast<size_t>(nnz) : range;
}

void AppendRecord(const Counts& bins, uint64_t nnz, std::vector<uint8_t>* out) {
  if (nnz == 0) return;
  int lo, hi;
  Span(bins, &lo, &hi);
  if (nnz <= RangeLength(bins, lo, hi)) {
    for (int b = lo; b <= hi; ++b)
      out->insert(out->end(), static_cast<size_t>(bins[static_cast<size_t>(b)]),
                  static_cast<uint8_t>(b));
    return;
  }
  out->push_back(static_cast<uint8_t>(kRangeTag | lo));
  out->push_back(static_cast<uint8_t>(hi));
  for (int b = lo; b <= hi; ++b) AppendVarint(bins[static_cast<size_t>(b)], out);
}

void AppendSortedRecord(const uint8_t* sorted, size_t n, std::vector<uint8_t>* out) {
  if (n == 0) return;
  // Below 128 cells every count is one varint byte: the range costs 2 + its bins.
  const size_t range = 2 + static_cast<size_t>(sorted[n - 1] - sorted[0]) + 1;
  if (n < 128 && n <= range) {
    out->insert(out->end(), sorted, sorted + n);
    return;
  }
  Counts bins{};
  for (size_t k = 0; k < n; ++k) ++bins[sorted[k] & (kBins - 1)];
  AppendRecord(bins, n, out);
}

void AppendByteCountsRecord(const uint8_t* counts, uint64_t nnz, std::vector<uint8_t>* out) {
  static_assert(kBins == 64);
  if (nnz == 0) return;
  // The span from the first and last non-zero bytes, eight bins a word.
  uint64_t words[8];
  std::memcpy(words, counts, sizeof words);
  int lo = 0, hi = kBins - 1;
  int w = 0;
  while (w < 8 && words[w] == 0) ++w;
  if (w == 8) return;  // no bins: nnz was wrong, and AppendRecord would write nothing either
  lo = w * 8 + __builtin_ctzll(words[w]) / 8;
  w = 7;
  while (words[w] == 0) --w;
  hi = w * 8 + (63 - __builtin_clzll(words[w])) / 8;
  size_t range = 2, cells = 0;
  for (int b = lo; b <= hi; ++b) {
    range += counts[b] < 0x80 ? 1 : 2;
    cells += counts[b];
  }
  if (nnz <= range) {
    // Each bin's run written eight bytes at a time (most runs are 0 to 2 cells), into
    // eight bytes of slack that are cut off again.
    const size_t at = out->size();
    out->resize(at + cells + 8);  // cells = nnz, when the counts add up to it as they must
    uint8_t* p = out->data() + at;
    for (int b = lo; b <= hi; ++b) {
      const uint8_t n = counts[b];
      if (n <= 8) {
        const uint64_t run = 0x0101010101010101ULL * static_cast<uint64_t>(b);
        std::memcpy(p, &run, sizeof run);
      } else {
        std::memset(p, b, n);
      }
      p += n;
    }
    out->resize(at + cells);
    return;
  }
  out->push_back(static_cast<uint8_t>(kRangeTag | lo));
  out->push_back(static_cast<uint8_t>(hi));
  for (int b = lo; b <= hi; ++b) AppendVarint(counts[b], out);
}

size_t ReadRecord(const uint8_t* p, size_t avail, uint64_t nnz, Counts* bins, const char** why) {
  if (nnz == 0) return 0;
  if (avail == 0) {
    *why = "its histogram record is cut short";
    return 0;
  }
  const uint8_t first = p[0];
  if (first < kBins) return ReadList(p, avail, nnz, bins, why);
  if ((first & 0xc0) == kRangeTag) return ReadRange(p, avail, nnz, bins, why);
  *why = "its histogram record has an unknown form";
  return 0;
}

}  // namespace cellcube::histogram
