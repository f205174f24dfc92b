// Runs work that reads untrusted files in a forked child process, so that a crash or a
// runaway allocation inside a library cellcube cannot fix (libhdf5 on damaged metadata,
// docs/RELIABILITY.md) becomes one clear error instead of killing the caller.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cellcube/status.h"

namespace cellcube {

struct IsolationOptions {
  // Bytes the child may allocate beyond what the process used when it forked
  // (RLIMIT_DATA); 0 = no limit. In sanitizer builds, whose shadow memory cannot live
  // under RLIMIT_DATA, the child is killed when its resident memory passes this.
  uint64_t memory_limit = 0;
  // While waiting, forward SIGINT, SIGTERM, SIGHUP and SIGQUIT to the child, and die of
  // the same signal when the child does (for a command-line front end). Otherwise the
  // caller's signal handling is left alone.
  bool forward_signals = false;
};

// Runs `work` in a child process and returns its Status (work's stdout/stderr output is
// the child's, written to the same descriptors). When the child dies instead, returns
// kCorrupt naming the file it last noted with NoteReading and the signal, or
// kOutOfMemory when it ran out of memory under the limit.
//
// Thread safety: fork copies only the calling thread. Locks other threads might hold
// must be made fork-safe with pthread_atfork by their owner (the h5ad reader does this
// for its HDF5 lock); malloc and stdio are. The child leaves with _exit: no atexit
// handlers or static destructors of the caller run in it.
Status RunIsolated(const std::function<Status()>& work, const IsolationOptions& options);

// In a RunIsolated child, records that `path` is being read, for the error message if
// the child dies; elsewhere does nothing. Thread-safe.
void NoteReading(const std::string& path);

// In a RunIsolated child, records the temporary file being written (empty: none now),
// which the parent removes if the child dies before reporting; elsewhere does nothing.
// Thread-safe.
void NoteTemporaryFile(const std::string& path);

// True in a RunIsolated child.
bool InIsolatedChild();

// The memory limit for work reading `input_bytes` of files: CELLCUBE_MEMORY_LIMIT when
// set ("8G", "512M", "1.5G", bytes, or "off"), else 4 GiB + 2 x input_bytes, capped at
// 90% of physical memory. Usage error for a malformed variable.
Result<uint64_t> MemoryLimitFor(uint64_t input_bytes);

}  // namespace cellcube
