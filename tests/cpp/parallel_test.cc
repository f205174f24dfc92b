// The process's thread pool (util/parallel.h) and the per-call scratch pools
// (util/scratch_pool.h).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

#include "util/parallel.h"
#include "util/scratch_pool.h"

namespace cellcube {
namespace {

TEST(ParallelFor, EveryItemOnceWithWorkersInRange) {
  for (size_t n : {0u, 1u, 7u, 1000u}) {
    std::vector<std::atomic<int>> seen(n);
    std::atomic<int> bad_worker{0};
    ParallelFor(n, 4, 3, [&](int worker, size_t i) {
      if (worker < 0 || worker >= 4) ++bad_worker;
      ++seen[i];
    });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "item " << i << " of " << n;
    EXPECT_EQ(bad_worker.load(), 0);
  }
}

TEST(ParallelFor, NestedCallsFinish) {
  std::atomic<int64_t> total{0};
  ParallelFor(8, 4, 1, [&](int, size_t i) {
    ParallelFor(100, 4, 7, [&](int, size_t j) { total += static_cast<int64_t>(i * 100 + j); });
  });
  EXPECT_EQ(total.load(), int64_t{799} * 800 / 2);
}

TEST(ParallelFor, ManyCallersAtOnceGetEveryItem) {
  // As a server does: several request threads asking for parallel work at the same
  // time share one pool, and each call still does all its items.
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&] {
      for (int round = 0; round < 20; ++round) {
        std::vector<int> hit(500, 0);
        ParallelFor(hit.size(), 8, 5, [&](int, size_t i) { ++hit[i]; });
        if (std::accumulate(hit.begin(), hit.end(), 0) != 500 ||
            *std::max_element(hit.begin(), hit.end()) != 1)
          ++wrong;
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(RunTogether, AllWorkersRunAtOnce) {
  // Each worker waits until every other has started: this finishes only if they all
  // run at the same time (more workers than cores included).
  for (int workers : {1, 2, 5}) {
    std::atomic<int> started{0};
    std::atomic<bool> timed_out{false};
    ASSERT_TRUE(RunTogether(workers, [&](int) {
      ++started;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (started.load() < workers)
        if (std::chrono::steady_clock::now() > deadline) {
          timed_out = true;
          return;
        }
    }));
    EXPECT_FALSE(timed_out.load()) << workers << " workers did not all run at once";
  }
}

TEST(ParallelFor, WorksInAForkedChild) {
  ParallelFor(64, 4, 1, [](int, size_t) {});  // the parent's pool exists
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int> n{0};
    ParallelFor(1000, 4, 1, [&](int, size_t) { ++n; });
    _exit(n.load() == 1000 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(ScratchPool, LendsOneSetPerCallAndReusesTheLastReturned) {
  ScratchPool<std::vector<int>> pool;
  const std::vector<int>* first = nullptr;
  {
    auto a = pool.Take();
    a->assign(1000, 7);
    first = &*a;
    auto b = pool.Take();  // a call running at the same time gets its own
    EXPECT_NE(&*b, first);
  }
  // b went back first, then a: the next call gets a, with its buffers as a left them.
  auto again = pool.Take();
  EXPECT_EQ(&*again, first);
  EXPECT_EQ(again->size(), 1000u);
}

}  // namespace
}  // namespace cellcube
