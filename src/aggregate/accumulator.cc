#include "aggregate/accumulator.h"

#include <algorithm>
#include <cmath>
#include <iterator>

namespace cellcube::aggregate {

Accumulator::Accumulator(int32_t n_groups, int32_t gene_begin, int32_t gene_end)
    : n_groups_(n_groups),
      gene_begin_(gene_begin),
      gene_end_(gene_end),
      width_(static_cast<size_t>(gene_end - gene_begin)),
      nnz_(static_cast<size_t>(n_groups) * width_, 0),
      sum_(nnz_.size(), 0.0),
      sumsq_(nnz_.size(), 0.0) {}

std::optional<BadValue> Accumulator::Add(const SparseBlock& block, bool by_rows,
                                         const CellContext& cells) {
  const auto& group_of_cell = *cells.group_of_cell;
  for (int64_t m = 0; m < block.major_count; ++m) {
    const int64_t major = block.major_begin + m;
    const int64_t lo = block.offsets[m], hi = block.offsets[m + 1];
    if (by_rows) {
      // One cell: its group and cp10k scale are fixed for the row.
      double scale = 0;
      if (cells.transform == Transform::kCp10kLog1p) {
        double total = 0;
        for (int64_t k = lo; k < hi; ++k) total += block.values[k];
        if (!std::isfinite(total)) {
          // Name the value that broke the total, not the first one it would spoil.
          for (int64_t k = lo; k < hi; ++k)
            if (!std::isfinite(block.values[k]))
              return BadValue{major, block.minor[k], block.values[k], block.values[k]};
        }
        scale = Cp10kScale(total);
      }
      const size_t row = static_cast<size_t>(group_of_cell[major]) * width_;
      // Counts are mostly small integers that repeat within a cell: transform each
      // distinct one once (log1p dominates the cost of aggregating).
      constexpr int kMemo = 64;
      double memo[kMemo];
      std::fill(std::begin(memo), std::end(memo), -1.0);
      for (int64_t k = lo; k < hi; ++k) {
        const int32_t gene = block.minor[k];
        const double raw = block.values[k];
        double v;
        const int small = raw >= 0 && raw < kMemo ? static_cast<int>(raw) : -1;
        if (small >= 0 && static_cast<double>(small) == raw) {
          if (memo[small] < 0) memo[small] = ApplyTransform(cells.transform, raw, scale);
          v = memo[small];
        } else {
          v = ApplyTransform(cells.transform, raw, scale);
        }
        if (!std::isfinite(v)) return BadValue{major, gene, raw, v};
        if (gene < gene_begin_ || gene >= gene_end_) continue;
        const size_t slot = row + static_cast<size_t>(gene - gene_begin_);
        nnz_[slot] += v > 0;
        sum_[slot] += v;
        sumsq_[slot] += v * v;
      }
    } else {
      const auto gene = static_cast<int32_t>(major);
      const bool in_range = gene >= gene_begin_ && gene < gene_end_;
      const size_t column = static_cast<size_t>(gene - gene_begin_);
      for (int64_t k = lo; k < hi; ++k) {
        const int32_t cell = block.minor[k];
        const double raw = block.values[k];
        const double scale = cells.cell_scale ? (*cells.cell_scale)[cell] : 0.0;
        const double v = ApplyTransform(cells.transform, raw, scale);
        if (!std::isfinite(v)) return BadValue{cell, gene, raw, v};
        if (!in_range) continue;
        const size_t slot = static_cast<size_t>(group_of_cell[cell]) * width_ + column;
        nnz_[slot] += v > 0;
        sum_[slot] += v;
        sumsq_[slot] += v * v;
      }
    }
  }
  return std::nullopt;
}

void Accumulator::Merge(const Accumulator& other) {
  for (size_t i = 0; i < nnz_.size(); ++i) {
    nnz_[i] += other.nnz_[i];
    sum_[i] += other.sum_[i];
    sumsq_[i] += other.sumsq_[i];
  }
}

std::optional<BadValue> AddColumnBlockToRowTotals(const SparseBlock& block,
                                                  std::vector<double>* totals) {
  for (int64_t m = 0; m < block.major_count; ++m) {
    for (int64_t k = block.offsets[m]; k < block.offsets[m + 1]; ++k) {
      const double v = block.values[k];
      if (!std::isfinite(v)) return BadValue{block.minor[k], block.major_begin + m, v, v};
      (*totals)[static_cast<size_t>(block.minor[k])] += v;
    }
  }
  return std::nullopt;
}

}  // namespace cellcube::aggregate
