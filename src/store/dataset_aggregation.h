// Aggregating one planned dataset (internal to src/store): its matrix read once per gene
// pass on every thread, the statistics spilled gene by gene in the store's order.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "cellcube/store.h"
#include "store/block_pipeline.h"
#include "store/dataset_plan.h"
#include "store/spill.h"

namespace cellcube {

// How a dataset's aggregation spends the memory bound (docs/SCALING.md).
struct MemoryPlan {
  int slots = 1;             // blocks held at once (read ahead or being added)
  int64_t block_values = 0;  // values per block: ~16 bytes each while held
  uint64_t accumulator = 0;  // bytes for the accumulator of one gene pass
};

// How the bound `limit` is spent by a build on `threads` threads.
MemoryPlan PlanMemory(uint64_t limit, int threads);

// Cells done of all datasets, reported through BuildCallbacks::progress. Thread-safe.
class ProgressCounter {
 public:
  ProgressCounter(const BuildCallbacks& cb, int64_t done, int64_t total)
      : cb_(cb), done_(done), total_(total) {}
  void Add(const std::string& dataset, int64_t cells) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ += cells;
    if (cb_.progress) cb_.progress({dataset, std::min(done_, total_), total_});
  }

 private:
  const BuildCallbacks& cb_;
  std::mutex mu_;
  int64_t done_, total_;
};

// Aggregates one dataset on `threads` threads into `spill` (reading into `ring`'s
// blocks) and returns its groups and record for the store's metadata. A dataset with
// values below 0 after the transform is flagged in its record, with a warning note.
Result<StoreData> AggregateDataset(const DatasetPlan& plan, const BuildOptions& options,
                                   const BuildCallbacks& callbacks, int threads, BlockRing* ring,
                                   SpillFile* spill, ProgressCounter* progress);

}  // namespace cellcube
