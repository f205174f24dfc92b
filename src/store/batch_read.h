// Many small reads of one file, done together: through io_uring, one system call per
// few hundred reads, or with pread one by one where io_uring is not available (an old
// kernel, or a container whose seccomp profile blocks it). The reads EntryCopy makes
// are a few hundred bytes each, scattered through the store; on a virtual machine a
// system call costs more than such a read's copy, so batching halves their cost
// (docs/BENCHMARKS.md).
//
// Not thread-safe: one BatchRead per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cellcube/status.h"

namespace cellcube {

class BatchRead {
 public:
  // `fd` stays owned by the caller and must outlive this. With `allow_uring` false,
  // every read is a pread.
  explicit BatchRead(int fd, bool allow_uring = true);
  ~BatchRead();
  BatchRead(const BatchRead&) = delete;
  BatchRead& operator=(const BatchRead&) = delete;

  // Queues a read of `bytes` bytes at `offset` into `dst`.
  void Add(uint64_t offset, void* dst, size_t bytes) { queue_.push_back({offset, dst, bytes}); }
  // Does every queued read and empties the queue: IoError for the first that failed,
  // or that met the end of the file.
  [[nodiscard]] Status Finish();
  bool uses_uring() const { return ring_ != nullptr; }

 private:
  struct Piece {
    uint64_t offset;
    void* dst;
    size_t bytes;
  };
  struct Ring;
  Status FinishWithRing();

  int fd_;
  std::unique_ptr<Ring> ring_;  // null: pread
  std::vector<Piece> queue_;
};

// Reads exactly `bytes` bytes at `offset` with pread (EINTR and short reads retried).
[[nodiscard]] Status ReadAt(int fd, void* dst, size_t bytes, uint64_t offset);

}  // namespace cellcube
