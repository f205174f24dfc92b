// Running over a matrix's blocks on several threads (internal to src/store).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "aggregate/tiled_rows.h"
#include "cellcube/h5ad.h"
#include "cellcube/status.h"

namespace cellcube {

// The blocks a pipeline reads into, kept from one run to the next (datasets, gene
// passes) so that their multi-megabyte buffers are allocated and faulted in once; and,
// for the same reason, the slabs of tiled aggregation's pending values.
struct BlockRing {
  explicit BlockRing(int n) : blocks(static_cast<size_t>(std::max(1, n))) {}
  std::vector<SparseBlock> blocks;
  aggregate::SlabPool slabs;
};

// Hands every block of `stream`, in block order, to each of `workers` threads:
// consume(worker, block). Blocks are read and inflated by whichever worker is free, at
// most ring.blocks.size() of them held at once, so inflating runs in parallel while each
// worker sees the blocks in the same order (what makes the sums deterministic). The
// first error stops every worker and is returned.
Status BroadcastBlocks(const h5ad::MatrixStream& stream, int workers, BlockRing& ring,
                       const std::function<Status(int, const SparseBlock&)>& consume);

// Hands each block of `stream` once to one of `workers` threads (at most
// ring.blocks.size()): whichever is free takes the next, so each worker sees its own
// blocks in increasing order, and which blocks those are varies from run to run.
Status ShareBlocks(const h5ad::MatrixStream& stream, int workers, BlockRing& ring,
                   const std::function<Status(int, const SparseBlock&)>& consume);

}  // namespace cellcube
