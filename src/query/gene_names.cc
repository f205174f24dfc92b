#include "query/gene_names.h"

#include <algorithm>
#include <bit>

#include "util/parallel.h"
#include "util/text.h"

namespace cellcube {

uint64_t CaseInsensitiveIndex::Hash(std::string_view s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : s) {
    h ^= static_cast<unsigned char>(AsciiLower(c));
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

CaseInsensitiveIndex::CaseInsensitiveIndex(const StringList& names) : names_(&names) {
  // At most two thirds full, so a probe ends after a few slots.
  const uint64_t size = std::bit_ceil(std::max<uint64_t>(16, names.size() + names.size() / 2));
  slots_.assign(size, -1);
  mask_ = size - 1;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) continue;
    uint64_t slot = Hash(names[i]) & mask_;
    while (slots_[slot] >= 0) slot = (slot + 1) & mask_;
    slots_[slot] = static_cast<int32_t>(i);
  }
}

bool CaseInsensitiveIndex::Find(std::string_view key, std::vector<int32_t>* out) const {
  bool found = false;
  if (slots_.empty()) return false;
  // Equal names were inserted in ascending order along one probe sequence.
  for (uint64_t slot = Hash(key) & mask_; slots_[slot] >= 0; slot = (slot + 1) & mask_) {
    const int32_t i = slots_[slot];
    if (EqualsIgnoringCase((*names_)[static_cast<size_t>(i)], key)) {
      out->push_back(i);
      found = true;
    }
  }
  return found;
}

GeneNames::GeneNames(const StringList& gene_ids, const StringList& gene_symbols) {
  constexpr size_t kWorthAThread = 20000;
  if (gene_ids.size() < kWorthAThread) {
    ids = CaseInsensitiveIndex(gene_ids);
    symbols = CaseInsensitiveIndex(gene_symbols);
    return;
  }
  // The two indexes at once, on the pool (a free thread helps; a busy pool, not).
  ParallelFor(2, 2, 1, [&](int, size_t which) {
    if (which == 0)
      ids = CaseInsensitiveIndex(gene_ids);
    else
      symbols = CaseInsensitiveIndex(gene_symbols);
  });
}

}  // namespace cellcube
