#include "store/batch_read.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace cellcube {

namespace {
constexpr unsigned kRingEntries = 256;

Status ReadError(int err) {
  return Status::IoError(std::string("cannot read the store: ") + std::strerror(err));
}
}  // namespace

Status ReadAt(int fd, void* dst, size_t bytes, uint64_t offset) {
  auto* out = static_cast<char*>(dst);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, out, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ReadError(errno);
    if (n == 0) return Status::IoError("the store file ended early (was it changed in place?)");
    out += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

struct BatchRead::Ring {
  io_uring ring{};
  bool ready = false;  // io_uring_queue_init succeeded: only then is there a ring to exit
  ~Ring() {
    if (ready) io_uring_queue_exit(&ring);
  }
};

BatchRead::BatchRead(int fd, bool allow_uring) : fd_(fd) {
  if (!allow_uring) return;
  auto ring = std::make_unique<Ring>();
  // Refused (ENOSYS, EPERM under seccomp, ENOMEM under a low memlock limit): pread.
  ring->ready = io_uring_queue_init(kRingEntries, &ring->ring, 0) == 0;
  if (ring->ready) ring_ = std::move(ring);
}

BatchRead::~BatchRead() = default;

Status BatchRead::Finish() {
  Status s = ring_ ? FinishWithRing() : Status::Ok();
  if (!ring_)
    for (const Piece& p : queue_) {
      s = ReadAt(fd_, p.dst, p.bytes, p.offset);
      if (!s.ok()) break;
    }
  queue_.clear();
  return s;
}

// Submits the queue in ring-sized batches and waits for each; a short read (the kernel
// may return fewer bytes) is finished with pread.
Status BatchRead::FinishWithRing() {
  io_uring* ring = &ring_->ring;
  for (size_t first = 0; first < queue_.size(); first += kRingEntries) {
    const size_t n = std::min<size_t>(kRingEntries, queue_.size() - first);
    for (size_t i = first; i < first + n; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (!sqe) return Status::Internal("io_uring: no free submission entry");
      const Piece& p = queue_[i];
      io_uring_prep_read(sqe, fd_, p.dst, static_cast<unsigned>(p.bytes), p.offset);
      io_uring_sqe_set_data64(sqe, i);
    }
    int submitted = io_uring_submit_and_wait(ring, static_cast<unsigned>(n));
    if (submitted < 0) return ReadError(-submitted);
    Status status = Status::Ok();
    for (size_t done = 0; done < n; ++done) {
      io_uring_cqe* cqe = nullptr;
      const int err = io_uring_wait_cqe(ring, &cqe);
      if (err < 0) return ReadError(-err);
      const Piece& p = queue_[io_uring_cqe_get_data64(cqe)];
      const int res = cqe->res;
      io_uring_cqe_seen(ring, cqe);
      if (!status.ok()) continue;  // reap the rest of the batch before returning
      if (res < 0) {
        status = ReadError(-res);
      } else if (static_cast<size_t>(res) < p.bytes) {
        const auto got = static_cast<size_t>(res);
        status = ReadAt(fd_, static_cast<char*>(p.dst) + got, p.bytes - got, p.offset + got);
      }
    }
    CC_RETURN_IF_ERROR(status);
  }
  return Status::Ok();
}

}  // namespace cellcube
