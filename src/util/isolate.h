// Runs work that reads untrusted files in a forked child process, so that a crash or a
// runaway allocation inside a library cellcube cannot fix (libhdf5 on damaged metadata,
// docs/RELIABILITY.md) becomes one clear error instead of killing the caller, and so
// that the work runs under a memory limit (docs/SCALING.md).
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
  // The command-line option that sets memory_limit ("--memory-limit"), which an
  // out-of-memory message names beside CELLCUBE_MEMORY_LIMIT; empty: the variable only.
  std::string memory_limit_option;
  // What a crash (a real signal) while reading a noted file means and what to do, after
  // "crashed (SIGSEGV, ...) while reading 'F': ". The caller knows the file's format
  // (h5ad::kCrashedReaderAdvice for HDF5); empty: "the file is most likely damaged".
  std::string crash_advice;
  // Sanitizer builds only (release builds ignore it): GCC 12's AddressSanitizer does not
  // lock its allocator around fork(), so a child forked while another thread of this
  // process allocates can wait forever on that lock. A child that has slept without
  // using CPU time for `stuck_after_ms` before answering is killed and the work forked
  // again, up to 10 times (then kInternal); 0 = wait as long as it takes. Work that
  // runs, however slowly, uses CPU time, so only a stuck child is killed.
  int stuck_after_ms = 0;
};

// Runs `work` in a child process and returns its Status (work's stdout/stderr output is
// the child's, written to the same descriptors). When the child does not answer:
//  - kOutOfMemory when it ran out of memory, from any thread (an allocation refused
//    under the limit or by the machine, the sanitizer builds' watch, the kernel's OOM
//    killer): "out of memory while <activity> (used 1.9 GiB of the 2.0 GiB limit);
//    <the setting> gives it more, e.g. ...". The child has a std::new_handler that
//    records the failure and leaves, so a bad_alloc never unwinds (nor aborts) a thread;
//  - kInternal when an exception reached std::terminate or the child exited on its own;
//  - kCorrupt naming the file it last noted with NoteReading and the signal when it
//    crashed (a real signal: libhdf5 on damaged metadata).
// A temporary file noted with NoteTemporaryFile is removed when the child did not answer.
//
// Thread safety: fork copies only the calling thread. Locks other threads might hold
// must be made fork-safe with pthread_atfork by their owner (the h5ad reader does this
// for its HDF5 lock); malloc and stdio are. The child leaves with _exit: no atexit
// handlers or static destructors of the caller run in it.
Status RunIsolated(const std::function<Status()>& work, const IsolationOptions& options);

// In a RunIsolated child, records that `path` is being read, for the error message if
// the child dies; elsewhere does nothing. Thread-safe.
void NoteReading(const std::string& path);

// In a RunIsolated child, records what the work is doing now, for an out-of-memory
// message ("out of memory while <what>"): e.g. "aggregating dataset 'x'", "writing the
// store"; empty: nothing in particular (the message then names the file being read).
// Elsewhere does nothing. Thread-safe; the last call wins.
void NoteActivity(const std::string& what);

// In a RunIsolated child, records the temporary file being written (empty: none now),
// which the parent removes if the child dies before reporting; elsewhere does nothing.
// Thread-safe.
void NoteTemporaryFile(const std::string& path);

// True in a RunIsolated child.
bool InIsolatedChild();

// In a RunIsolated child, the memory limit it runs under (IsolationOptions::memory_limit),
// for work that sizes its buffers by it; 0 = no limit, or not in a child.
uint64_t MemoryLimitInForce();

// Parses a memory limit: "8G", "512M", "1.5G", "64K" (binary units, optional "B"/"iB"),
// a number of bytes, or "off" (returns 0: no limit). At least 1 MiB. `source` names
// where the text came from ("--memory-limit", "CELLCUBE_MEMORY_LIMIT") in the usage error
// for anything else.
Result<uint64_t> ParseMemoryLimit(const std::string& text, const std::string& source);

// The memory limit when the command line gives none: CELLCUBE_MEMORY_LIMIT if set, else
// 2 GiB (docs/SCALING.md). Usage error for a malformed variable.
Result<uint64_t> DefaultMemoryLimit();

}  // namespace cellcube
