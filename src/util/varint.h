// LEB128 varints, the one codec of the histogram records (docs/FORMAT.md "Histograms")
// and the build's spill file: 7 bits a byte, low first, the high bit set on every byte
// but the last. Header-only; no dependencies.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cellcube {

inline size_t VarintLength(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// Writes v at p (at most 10 bytes); returns the byte after it.
inline uint8_t* PutVarint(uint64_t v, uint8_t* p) {
  for (; v >= 0x80; v >>= 7) *p++ = static_cast<uint8_t>(v | 0x80);
  *p++ = static_cast<uint8_t>(v);
  return p;
}

enum class VarintRead { kOk, kCutShort, kTooLong };

// Reads a varint of at most `max_bytes` bytes from [*p, end) into *v and moves *p past
// it; on kCutShort (the bytes end first) or kTooLong (it runs on past max_bytes, at most
// 9) *v and *p are left as they were.
inline VarintRead GetVarint(const uint8_t** p, const uint8_t* end, int max_bytes, uint64_t* v) {
  const uint8_t* at = *p;
  uint64_t x = 0;
  for (int i = 0;; ++i) {
    if (i == max_bytes) return VarintRead::kTooLong;
    if (at == end) return VarintRead::kCutShort;
    const uint8_t byte = *at++;
    x |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if (!(byte & 0x80)) break;
  }
  *v = x;
  *p = at;
  return VarintRead::kOk;
}

}  // namespace cellcube
