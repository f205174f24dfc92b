// The one "parallel for" of cellcube: independent items spread over a few threads.
#pragma once

#include <cstddef>
#include <functional>

namespace cellcube {

// Calls body(worker, i) for every i in [0, n), on up to `workers` threads (the caller's
// being worker 0), each taking the next `grain` items when it is free, so uneven items
// balance. `worker` names the thread (for per-thread scratch such as a compressor).
// Returns when every item is done. A thread that cannot be started (out of threads or
// memory) leaves its share to the others: never an error, only less parallelism.
// body must not throw.
void ParallelFor(size_t n, int workers, size_t grain,
                 const std::function<void(int worker, size_t i)>& body);

// The machine's cores (at least 1), asked of the system once: the library reads
// /sys on every call, which costs microseconds per query on a virtual machine.
int Cores();

}  // namespace cellcube
