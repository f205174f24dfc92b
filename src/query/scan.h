// The per-gene scans of a roll-up (internal to src/query): for each gene, only its
// entries in the runs of selected groups, summed into per-split accumulators in two
// passes (nnz and sum, then the second moment about the splits' means), on the calling
// thread or, for large roll-ups, on the pool (util/parallel.h).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "cellcube/query.h"
#include "cellcube/store_reader.h"
#include "store/store_entries.h"

namespace cellcube::query {

struct Acc {
  double sum;
  uint64_t nnz;
};

// Per split, for the second moment: Σ over its entries of m2 + n·(mean_entry − mean)²,
// and the cells of the groups with an entry.
struct SecondAcc {
  double m2;
  double cells;
};

// A range of groups whose entries are scanned; in a roll-up, the selected ones all
// belong to `dataset` (-1: not known).
using GroupRange = GroupRun;

// One thread's accumulators.
struct ScanBuffers {
  std::vector<Acc> acc;
  std::vector<SecondAcc> second;
  std::vector<double> mean;
  std::vector<Aggregate> gene;
  std::vector<int32_t> active;  // this gene's splits (sparse roll-ups)
  std::vector<uint32_t> stamp;  // per split: 1 + the gene it was last activated for
  std::vector<Bins> bins;       // per split: this gene's histogram, when asked for
  // Per contributing dataset, the word of its measured bits that holds the genes of
  // block `measured_block` (64 genes): a gene's tests then read this array, not a line
  // of every dataset's row.
  std::vector<uint64_t> measured_words;
  int64_t measured_block = -1;
};

using SumsFn = void (*)(const StoreReader&, const EntryRead&, int64_t,
                        const std::vector<GroupRange>&, int64_t, const int32_t*, Acc*);
using SecondFn = void (*)(const StoreReader&, const EntryRead&, int64_t,
                          const std::vector<GroupRange>&, int64_t, const int32_t*, const double*,
                          const double*, SecondAcc*);

using HistFn = void (*)(const EntryRead&, int64_t, const std::vector<GroupRange>&, int64_t,
                        const int32_t*, Bins*);

// The kernels for the entry types of `read`: sums scattered (many splits) or in runs;
// with `short_runs`, for runs of a few entries each (ShortRuns).
SumsFn PickSums(const EntryRead& read, bool scattered, bool short_runs);
SecondFn PickSecond(const EntryRead& read, bool short_runs);

// Whether `runs` are many and each spans a few groups (one cell type in each of many
// datasets): their entries are then found and loaded some runs ahead of their scan.
bool ShortRuns(const std::vector<GroupRange>& runs);
HistFn PickHist(const EntryRead& read);

// Everything the per-gene scans of one query share (read-only while they run).
struct GeneScan {
  const StoreReader* store = nullptr;
  const EntryRead* read = nullptr;  // the checked entries: the mapping's, or a copy's
  const std::vector<GroupRange>* runs = nullptr;
  int64_t base = 0;
  const int32_t* split_of = nullptr;
  size_t n_splits = 0, n_genes = 0, n_contributing = 0;
  const int64_t* cells = nullptr;         // per split
  const int32_t* contributing = nullptr;  // per contributing dataset: its index
  const int64_t* pairs_begin = nullptr;   // per contributing dataset, into:
  const int32_t* pair_split = nullptr;    // the splits with cells of that dataset
  const int64_t* pair_cells = nullptr;    // and how many
  const int32_t* all_splits = nullptr;    // 0, 1, ..., n_splits - 1
  // Many splits, each holding the cells of about one dataset (a DE's donors): per gene,
  // only the splits of the datasets that measured it are reset, summed and visited.
  bool sparse = false;
  const double* inverse_cells = nullptr;  // per group
  SumsFn sums = nullptr;
  SecondFn second = nullptr;  // null: no var/std asked
  HistFn hist = nullptr;      // null: no histograms asked
  // Per (split, gene), split-major like the aggregates, when `hist` is set and there is
  // no visitor.
  Bins* bins_out = nullptr;
  // When set, each gene's splits go here (from whichever thread summed it) instead of
  // into the split-major matrix.
  const QueryEngine::RollUpVisitor* visit = nullptr;
};

// Every gene: on this thread, or, when the genes hold at least `parallel_min_entries`
// entries, on the pool too, each participant taking a run of genes with about equal
// entries (a gene is always summed by one thread in one order, so the answer is the same
// bits). `own` are the caller's buffers; agg[split * genes + gene] (zeroed by the
// caller) receives the aggregates unless q.visit is set.
void ScanAllGenes(const GeneScan& q, const std::vector<int32_t>& genes,
                  int64_t parallel_min_entries, ScanBuffers* own, Aggregate* agg);

}  // namespace cellcube::query
