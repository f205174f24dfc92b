// Gene ids and symbols looked up ignoring ASCII case (internal to src/query): open
// addressing over the store's own strings, so building it allocates two arrays of
// int32, not a string per gene, and a multi-gigabyte store's 60,000 genes index in a
// few milliseconds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cellcube/store_data.h"

namespace cellcube {

class CaseInsensitiveIndex {
 public:
  CaseInsensitiveIndex() = default;
  // Indexes names[i] for every i with a non-empty name. `names` must outlive the index.
  explicit CaseInsensitiveIndex(const StringList& names);

  // Appends every i whose name equals `key` ignoring ASCII case, ascending; false when
  // there is none.
  bool Find(std::string_view key, std::vector<int32_t>* out) const;

 private:
  static uint64_t Hash(std::string_view s);

  const StringList* names_ = nullptr;
  std::vector<int32_t> slots_;  // name index, -1 = empty
  uint64_t mask_ = 0;
};

// The engine's gene lookup: ids first, then symbols (query.h, "genes").
struct GeneNames {
  CaseInsensitiveIndex ids;
  CaseInsensitiveIndex symbols;
  // The two indexes are built at once, on two threads (tens of thousands of names each).
  GeneNames(const StringList& gene_ids, const StringList& gene_symbols);
};

}  // namespace cellcube
