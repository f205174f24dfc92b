// The one place cellcube runs work in parallel: a process-wide pool of worker threads,
// started on first use and shared by the query engine, DE, the store reader's checks
// and copies, the store writer and the build pipeline. No call starts threads of its
// own, so a server answering many queries at once runs at most its request threads plus
// the pool's, however many queries ask for parallel work.
//
// Thread safety: every function may be called from any thread, also from inside a body
// (a nested call runs on the threads that are free, its caller's always among them).
// Fork: a child process starts with an empty pool of its own (pthread_atfork).
#pragma once

#include <cstddef>
#include <functional>

namespace cellcube {

// Calls body(worker, i) for every i in [0, n), on the calling thread (worker 0) and up
// to workers - 1 pool threads that are free, each taking the next `grain` items when it
// is free, so uneven items balance. `worker` (in [0, workers)) names the participant,
// for per-participant scratch such as a compressor. Returns when every item is done.
// The pool helps only while it has idle threads: when it is busy (other queries), the
// caller does the work alone, never waiting for a thread. body must not throw.
void ParallelFor(size_t n, int workers, size_t grain,
                 const std::function<void(int worker, size_t i)>& body);

// Runs body(0..workers-1) at the same time: the caller is worker 0 and workers - 1 pool
// threads run the others, the pool growing for them when it must, since a pipeline whose
// workers wait for each other (each block handed to every worker) needs them all at
// once. Returns when all are done. false when a thread could not be started (out of
// threads or memory): then no body ran. body must not throw.
bool RunTogether(int workers, const std::function<void(int worker)>& body);

// The machine's cores (at least 1), asked of the system once: the library reads
// /sys on every call, which costs microseconds per query on a virtual machine.
int Cores();

}  // namespace cellcube
