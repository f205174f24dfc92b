#include "aggregate/accumulator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <new>

namespace cellcube::aggregate {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr int64_t kPrefetchAhead = 12;

// Zeroed memory for the slots; large arrays are 2 MiB-aligned and advised to use huge
// pages (random updates over hundreds of megabytes otherwise miss the TLB each time).
SlotStats* AllocateSlots(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (bytes >= kHugePage) (void)::madvise(p, bytes, MADV_HUGEPAGE);
  return static_cast<SlotStats*>(p);
}

inline void Update(SlotStats& s, double v) {
  if (s.count == 0) s.shift = v;
  const double d = v - s.shift;
  s.nnz += v > 0;
  s.count += 1;
  s.sum += v;
  s.shifted_sq += d * d;
}

// Transforms a cell's values, each distinct small count once: counts are mostly small
// integers that repeat within a cell, and log1p dominates the cost of aggregating.
class CellTransform {
 public:
  CellTransform(Transform t, double scale) : t_(t), scale_(scale) {
    std::fill(std::begin(memo_), std::end(memo_), -1.0);
  }
  double operator()(double raw) {
    const int small = raw >= 0 && raw < kMemo ? static_cast<int>(raw) : -1;
    if (small >= 0 && static_cast<double>(small) == raw) {
      if (memo_[small] < 0) memo_[small] = ApplyTransform(t_, raw, scale_);
      return memo_[small];
    }
    return ApplyTransform(t_, raw, scale_);
  }

 private:
  static constexpr int kMemo = 64;
  Transform t_;
  double scale_;
  double memo_[kMemo];
};

}  // namespace

void Accumulator::FreeSlots::operator()(SlotStats* p) const {
  if (p) ::munmap(p, bytes);
}

Accumulator::Accumulator(int32_t n_groups, int32_t gene_begin, int32_t gene_end)
    : n_groups_(n_groups),
      gene_begin_(gene_begin),
      gene_end_(gene_end),
      width_(RowWidth(gene_end - gene_begin)),
      slots_(AllocateSlots(BytesFor(n_groups, gene_end - gene_begin)),
             FreeSlots{BytesFor(n_groups, gene_end - gene_begin)}) {}

std::optional<BadValue> Accumulator::AddRows(const SparseBlock& block, const CellContext& cells,
                                             int worker, int workers) {
  const auto& group_of_cell = *cells.group_of_cell;
  bool negative = false;
  const int32_t* rank = cells.gene_rank ? cells.gene_rank->data() : nullptr;
  for (int64_t m = 0; m < block.major_count; ++m) {
    const int64_t cell = block.major_begin + m;
    const int64_t lo = block.offsets[m], hi = block.offsets[m + 1];
    double scale = 0;
    if (cells.transform == Transform::kCp10kLog1p) {
      double total = 0;
      for (int64_t k = lo; k < hi; ++k) total += block.values[k];
      if (!std::isfinite(total)) {
        // Name the value that broke the total, not the first one it would spoil.
        for (int64_t k = lo; k < hi; ++k)
          if (!std::isfinite(block.values[k]))
            return BadValue{cell, block.minor[k], block.values[k], block.values[k]};
      }
      scale = Cp10kScale(total);
    }
    SlotStats* row = &slots_[static_cast<size_t>(group_of_cell[cell]) * width_];
    CellTransform transform(cells.transform, scale);
    auto mine = [&](int32_t gene) {
      return gene >= gene_begin_ && gene < gene_end_ && OwnerOfGene(gene, workers) == worker;
    };
    for (int64_t k = lo; k < hi; ++k) {
      // The slots are scattered over far more memory than the caches hold: ask for the
      // slot of a value a little ahead while this one is added.
      if (k + kPrefetchAhead < hi) {
        const int32_t ahead =
            rank ? rank[block.minor[k + kPrefetchAhead]] : block.minor[k + kPrefetchAhead];
        if (mine(ahead)) __builtin_prefetch(&row[ahead - gene_begin_], 1, 3);
      }
      const int32_t gene = rank ? rank[block.minor[k]] : block.minor[k];
      // Values of other genes are checked by their owner, in the pass that covers them.
      if (!mine(gene)) continue;
      const double raw = block.values[k];
      const double v = transform(raw);
      if (!std::isfinite(v)) return BadValue{cell, block.minor[k], raw, v};
      negative |= v < 0;
      Update(row[gene - gene_begin_], v);
    }
  }
  if (negative) saw_negative_.store(true, std::memory_order_relaxed);
  return std::nullopt;
}

std::optional<BadValue> Accumulator::AddColumns(const SparseBlock& block,
                                                const CellContext& cells) {
  const auto& group_of_cell = *cells.group_of_cell;
  bool negative = false;
  for (int64_t m = 0; m < block.major_count; ++m) {
    const int64_t major = block.major_begin + m;
    const int32_t gene = cells.gene_rank ? (*cells.gene_rank)[major] : static_cast<int32_t>(major);
    if (gene < gene_begin_ || gene >= gene_end_) continue;  // checked in its own pass
    SlotStats* column = &slots_[static_cast<size_t>(gene - gene_begin_)];
    for (int64_t k = block.offsets[m]; k < block.offsets[m + 1]; ++k) {
      const int32_t cell = block.minor[k];
      const double raw = block.values[k];
      const double scale = cells.cell_scale ? (*cells.cell_scale)[cell] : 0.0;
      const double v = ApplyTransform(cells.transform, raw, scale);
      if (!std::isfinite(v)) return BadValue{cell, major, raw, v};
      negative |= v < 0;
      Update(column[static_cast<size_t>(group_of_cell[cell]) * width_], v);
    }
  }
  if (negative) saw_negative_.store(true, std::memory_order_relaxed);
  return std::nullopt;
}

std::optional<BadValue> AddColumnBlockToRowTotals(const SparseBlock& block, int worker, int workers,
                                                  std::vector<double>* totals) {
  constexpr int32_t kCellSpan = 512;
  for (int64_t m = 0; m < block.major_count; ++m) {
    for (int64_t k = block.offsets[m]; k < block.offsets[m + 1]; ++k) {
      const int32_t cell = block.minor[k];
      if ((cell / kCellSpan) % workers != worker) continue;
      const double v = block.values[k];
      if (!std::isfinite(v)) return BadValue{cell, block.major_begin + m, v, v};
      (*totals)[static_cast<size_t>(cell)] += v;
    }
  }
  return std::nullopt;
}

}  // namespace cellcube::aggregate
