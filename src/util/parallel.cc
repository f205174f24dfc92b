#include "util/parallel.h"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

namespace cellcube {

void ParallelFor(size_t n, int workers, size_t grain,
                 const std::function<void(int worker, size_t i)>& body) {
  grain = std::max<size_t>(1, grain);
  const size_t wanted =
      std::min<size_t>((n + grain - 1) / grain, static_cast<size_t>(std::max(1, workers)));
  std::atomic<size_t> next{0};
  auto work = [&](int worker) {
    for (size_t begin = next.fetch_add(grain); begin < n; begin = next.fetch_add(grain))
      for (size_t i = begin; i < std::min(n, begin + grain); ++i) body(worker, i);
  };
  std::vector<std::thread> threads;
  for (size_t w = 1; w < wanted; ++w) {
    try {
      threads.emplace_back(work, static_cast<int>(w));
    } catch (const std::system_error&) {
      break;  // the threads already started, and this one, share the items
    }
  }
  work(0);
  for (auto& t : threads) t.join();
}

int Cores() {
  static const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return cores;
}

}  // namespace cellcube
