// StoreEntries::Preload (StoreOpenOptions::preload): the mapped arrays copied into
// anonymous memory on 2 MB pages. A read of many short runs spread over gigabytes (an
// atlas-wide DE) pays a page walk and often a page fault per run on the file's 4 KB
// pages; in one block of transparent huge pages it pays neither (docs/BENCHMARKS.md).
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "store/store_entries.h"
#include "util/text.h"

namespace cellcube {
namespace {

constexpr uint64_t kHugePage = uint64_t{2} << 20;
constexpr uint64_t kAlign = 64;  // each array starts on a cache line

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

// /proc/meminfo's MemAvailable in bytes; 0 when unknown.
uint64_t MemAvailable() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

// The bytes of [begin, begin + bytes) the kernel backs with huge pages: the sum of
// AnonHugePages over /proc/self/smaps's mappings inside it.
uint64_t HugeBytes(const char* begin, uint64_t bytes) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  uint64_t huge = 0;
  const auto lo = reinterpret_cast<uintptr_t>(begin), hi = lo + bytes;
  while (std::getline(in, line)) {
    uintptr_t a = 0, b = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> a >> dash >> b && dash == '-') {
      inside = a >= lo && b <= hi;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      std::istringstream field(line.substr(14));
      uint64_t kb = 0;
      field >> kb;
      huge += kb * 1024;
    }
  }
  return huge;
}

}  // namespace

void StoreEntries::Preload(uint64_t max_bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  PreloadReport& report = preload_;
  report.asked = true;
  std::vector<ArrayView*> views;
  for (ArrayView* v : {&a_.indptr, &a_.indices, &a_.nnz, &a_.sum, &a_.second, &offsets_,
                       &hist_.data, &hist_.indptr, &hist_.offsets})
    if (v->mapped && v->size > 0) views.push_back(v);
  uint64_t total = 0;  // with each array's start aligned
  for (const ArrayView* v : views) {
    const uint64_t bytes = static_cast<uint64_t>(v->size) * ArrayWidth(v->type);
    report.bytes += bytes;
    total += RoundUp(bytes, kAlign);
  }
  const uint64_t available = MemAvailable();
  const uint64_t budget = max_bytes ? max_bytes : available / 4 * 3;
  if (views.empty()) {
    report.why_not = "none of its arrays is mapped (they were read into memory at open)";
    return;
  }
  if (total > budget) {
    report.why_not =
        "its arrays take " + FormatBinaryBytes(report.bytes) + ", more than the " +
        FormatBinaryBytes(budget) +
        (max_bytes ? " allowed" : " it may take (three quarters of the memory available)");
    return;
  }
  // One block, aligned to 2 MB so that the kernel can back all of it with huge pages.
  const uint64_t length = RoundUp(total, kHugePage) + kHugePage;
  void* block = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) {
    report.why_not = "the system refused " + FormatBytes(length) + " of memory";
    return;
  }
  char* base = static_cast<char*>(block);
  char* start = base + (RoundUp(reinterpret_cast<uintptr_t>(base), kHugePage) -
                        reinterpret_cast<uintptr_t>(base));
  ::madvise(start, RoundUp(total, kHugePage), MADV_HUGEPAGE);
  char* at = start;
  for (ArrayView* v : views) {
    const uint64_t bytes = static_cast<uint64_t>(v->size) * ArrayWidth(v->type);
    std::memcpy(at, v->data, bytes);
    v->data = at;
    v->mapped = false;
    at += RoundUp(bytes, kAlign);
  }
  ::mprotect(start, RoundUp(total, kHugePage), PROT_READ);  // read-only, as the mapping
  preload_block_ = block;
  preload_length_ = length;
  report.done = true;
  report.huge_bytes = std::min(report.bytes, HugeBytes(start, RoundUp(total, kHugePage)));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace cellcube
