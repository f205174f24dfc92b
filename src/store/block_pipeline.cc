#include "store/block_pipeline.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "util/parallel.h"

namespace cellcube {
namespace {

// Collects the first error of several threads.
class FirstError {
 public:
  void Set(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_) error_ = std::move(s);
    failed_ = true;
  }
  bool failed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }
  Status Take() { return failed_ ? error_ : Status::Ok(); }

 private:
  mutable std::mutex mu_;
  bool failed_ = false;
  Status error_;
};

// Runs body(0..workers-1) at once on the pool (util/parallel.h): a pipeline missing a
// worker would wait for it forever, so when a thread cannot be started none runs.
Status RunWorkers(int workers, const std::function<void(int)>& body) {
  if (!RunTogether(workers, body))
    return Status::OutOfMemory("cannot start the build's worker threads");
  return Status::Ok();
}

class Broadcast {
 public:
  Broadcast(const h5ad::MatrixStream& stream, int workers, BlockRing& ring,
            const std::function<Status(int, const SparseBlock&)>& consume)
      : stream_(stream),
        workers_(workers),
        consume_(consume),
        slots_(ring.blocks.size()),
        next_consume_(static_cast<size_t>(workers), 0) {
    for (size_t i = 0; i < slots_.size(); ++i) slots_[i].block = &ring.blocks[i];
  }

  Status Run() {
    CC_RETURN_IF_ERROR(RunWorkers(workers_, [this](int w) { Work(w); }));
    return error_.Take();
  }

 private:
  enum class State { kFree, kReading, kReady };
  struct Slot {
    SparseBlock* block = nullptr;
    int64_t index = -1;
    State state = State::kFree;
    int pending = 0;  // workers yet to consume it
  };

  void Fail(Status s) {
    error_.Set(std::move(s));
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }

  void Work(int w) {
    const int64_t n = stream_.num_blocks();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (stop_) return;
      const int64_t mine = next_consume_[w];
      if (mine >= n) return;
      Slot& wanted = SlotOf(mine);
      if (wanted.index == mine && wanted.state == State::kReady) {
        lock.unlock();
        Status s = consume_(w, *wanted.block);
        if (!s.ok()) return Fail(std::move(s));
        lock.lock();
        if (--wanted.pending == 0) wanted.state = State::kFree;
        ++next_consume_[w];
        cv_.notify_all();
        continue;
      }
      // Read ahead while the block this worker needs is not ready.
      if (next_read_ < n && SlotOf(next_read_).state == State::kFree) {
        const int64_t index = next_read_++;
        Slot& slot = SlotOf(index);
        slot.state = State::kReading;
        slot.index = index;
        lock.unlock();
        Status s = stream_.ReadBlock(index, slot.block);
        if (!s.ok()) return Fail(std::move(s));
        lock.lock();
        slot.state = State::kReady;
        slot.pending = workers_;
        cv_.notify_all();
        continue;
      }
      cv_.wait(lock);
    }
  }

  Slot& SlotOf(int64_t index) { return slots_[static_cast<size_t>(index) % slots_.size()]; }

  const h5ad::MatrixStream& stream_;
  const int workers_;
  const std::function<Status(int, const SparseBlock&)>& consume_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;
  std::vector<int64_t> next_consume_;
  int64_t next_read_ = 0;
  bool stop_ = false;
  FirstError error_;
};

}  // namespace

Status BroadcastBlocks(const h5ad::MatrixStream& stream, int workers, BlockRing& ring,
                       const std::function<Status(int, const SparseBlock&)>& consume) {
  return Broadcast(stream, std::max(1, workers), ring, consume).Run();
}

Status ShareBlocks(const h5ad::MatrixStream& stream, int workers, BlockRing& ring,
                   const std::function<Status(int, const SparseBlock&)>& consume) {
  std::atomic<int64_t> next{0};
  FirstError error;
  workers = std::clamp(workers, 1, static_cast<int>(ring.blocks.size()));
  CC_RETURN_IF_ERROR(RunWorkers(workers, [&](int w) {
    SparseBlock& block = ring.blocks[static_cast<size_t>(w)];
    for (int64_t i = next++; i < stream.num_blocks() && !error.failed(); i = next++) {
      Status s = stream.ReadBlock(i, &block);
      if (s.ok()) s = consume(w, block);
      if (!s.ok()) return error.Set(std::move(s));
    }
  }));
  return error.Take();
}

}  // namespace cellcube
