// Writing a store whose entries are streamed from parts (internal to src/store).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"
#include "store/entry_stream.h"
#include "store/temp_output.h"

namespace cellcube {

// Writes `meta` (groups, genes, datasets, the histograms' layout; its entry vectors are
// ignored) and the `n_entries` entries drawn gene by gene from `parts`, in part order
// within a gene, to `out`'s temporary file, and commits it over the target; with
// histograms, the parts' records take `n_hist_bytes` in all (without, there are none).
// Memory: the metadata and a buffer of about a quarter of a million entries.
// `progress(genes_done, genes_total)` may be empty. A part whose runs are out of order,
// groups that do not ascend, a record that breaks the rules (RecordFault), or counts of
// entries or record bytes other than given is an error, and the target is left untouched.
[[nodiscard]] Status WriteStreamedStore(const StoreData& meta, int64_t n_entries,
                                        uint64_t n_hist_bytes,
                                        const std::vector<StreamedPart>& parts, TempOutput& out,
                                        const std::function<void(int64_t, int64_t)>& progress);

}  // namespace cellcube
