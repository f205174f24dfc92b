#include "util/parallel.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace cellcube {
namespace {

// Threads that take tasks from one queue. Threads are never stopped: the pool lives as
// long as the process (a detached thread per worker, at most the cores for ParallelFor,
// plus what the largest RunTogether needed).
class Pool {
 public:
  // Queues `task` for a free thread; starts threads so that at least `threads` are idle
  // or busy with earlier tasks of this call. false when a thread cannot be started.
  bool Submit(std::vector<std::function<void()>> tasks, size_t ensure_threads) {
    std::unique_lock<std::mutex> lock(mu_);
    while (idle_ < queue_.size() + tasks.size() && threads_ < ensure_threads) {
      try {
        std::thread([this] { Loop(); }).detach();
      } catch (const std::system_error&) {
        return false;
      }
      ++threads_;
      ++idle_;
    }
    for (auto& t : tasks) queue_.push_back(std::move(t));
    lock.unlock();
    cv_.notify_all();
    return true;
  }
  size_t threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }
  std::mutex& mutex() { return mu_; }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return !queue_.empty(); });
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      --idle_;
      lock.unlock();
      task();
      lock.lock();
      ++idle_;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t threads_ = 0, idle_ = 0;
};

// The process's pool. A forked child gets a new one: the parent's threads are not in it,
// and the old pool's mutex is held across the fork so that no thread of it is inside.
std::atomic<Pool*> the_pool{nullptr};

Pool& ThePool() {
  static const bool registered = [] {
    pthread_atfork(
        [] {
          if (Pool* p = the_pool.load()) p->mutex().lock();
        },
        [] {
          if (Pool* p = the_pool.load()) p->mutex().unlock();
        },
        [] { the_pool.store(nullptr); });  // the child's copy is abandoned, never used again
    return true;
  }();
  (void)registered;
  Pool* pool = the_pool.load(std::memory_order_acquire);
  if (pool) return *pool;
  auto* fresh = new Pool();
  if (the_pool.compare_exchange_strong(pool, fresh)) return *fresh;
  delete fresh;
  return *pool;
}

// What one ParallelFor shares with the pool threads that join it; it outlives the call
// when a queued helper starts only after the items are done.
struct ForState {
  std::atomic<size_t> next{0};
  std::atomic<int> next_worker{1};
  std::mutex mu;
  std::condition_variable done;
  int running = 0;      // helpers inside the items
  bool closed = false;  // the caller finished: helpers that start now do nothing
};

}  // namespace

void ParallelFor(size_t n, int workers, size_t grain,
                 const std::function<void(int worker, size_t i)>& body) {
  grain = std::max<size_t>(1, grain);
  const size_t wanted =
      std::min<size_t>((n + grain - 1) / grain, static_cast<size_t>(std::max(1, workers)));
  auto work = [&body, n, grain](ForState& s, int worker) {
    for (size_t begin = s.next.fetch_add(grain); begin < n; begin = s.next.fetch_add(grain))
      for (size_t i = begin; i < std::min(n, begin + grain); ++i) body(worker, i);
  };
  if (wanted <= 1) {
    ForState alone;
    work(alone, 0);
    return;
  }
  auto state = std::make_shared<ForState>();
  std::vector<std::function<void()>> helpers;
  for (size_t h = 1; h < wanted; ++h)
    helpers.emplace_back([state, work] {
      {
        std::lock_guard<std::mutex> lock(state->mu);
        if (state->closed) return;
        ++state->running;
      }
      work(*state, state->next_worker.fetch_add(1));
      std::lock_guard<std::mutex> lock(state->mu);
      if (--state->running == 0) state->done.notify_all();
    });
  // Helpers never wait for anything: if the pool cannot start them, the caller does all.
  (void)ThePool().Submit(std::move(helpers), static_cast<size_t>(std::max(1, Cores() - 1)));
  work(*state, 0);
  std::unique_lock<std::mutex> lock(state->mu);
  state->closed = true;
  state->done.wait(lock, [&] { return state->running == 0; });
}

bool RunTogether(int workers, const std::function<void(int worker)>& body) {
  if (workers <= 1) {
    body(0);
    return true;
  }
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::vector<std::function<void()>> others;
  for (int w = 1; w < workers; ++w)
    others.emplace_back([&, w] {
      body(w);
      std::lock_guard<std::mutex> lock(mu);
      if (++finished == workers - 1) cv.notify_all();
    });
  // Enough threads for every queued task, so that each of these starts promptly: the
  // workers of a pipeline wait for one another.
  Pool& pool = ThePool();
  if (!pool.Submit(std::move(others), pool.threads() + static_cast<size_t>(workers))) return false;
  body(0);
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == workers - 1; });
  return true;
}

int Cores() {
  static const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return cores;
}

}  // namespace cellcube
