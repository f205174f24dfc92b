// Running over a matrix's blocks on several threads (internal to src/store).
#pragma once

#include <cstdint>
#include <functional>

#include "cellcube/h5ad.h"
#include "cellcube/status.h"

namespace cellcube {

// Hands every block of `stream`, in block order, to each of `workers` threads:
// consume(worker, block). Blocks are read and inflated by whichever worker is free, at
// most `slots` of them held at once, so inflating runs in parallel while each worker
// sees the blocks in the same order (what makes the sums deterministic). The first
// error stops every worker and is returned.
Status BroadcastBlocks(const h5ad::MatrixStream& stream, int workers, int slots,
                       const std::function<Status(int, const SparseBlock&)>& consume);

// Hands each block of `stream` once to one of `workers` threads, in no fixed order.
Status ShareBlocks(const h5ad::MatrixStream& stream, int workers,
                   const std::function<Status(int, const SparseBlock&)>& consume);

}  // namespace cellcube
