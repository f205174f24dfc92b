// One cell's value transform with a memo of its small counts (internal to
// src/aggregate): the accumulator and the tiled row pass transform alike, so that both
// produce the same bits.
#pragma once

#include <algorithm>
#include <iterator>
#include <limits>

#include <cmath>
#include <optional>

#include "aggregate/accumulator.h"
#include "aggregate/transform.h"
#include "cellcube/sparse_block.h"
#include "histogram/histogram.h"

namespace cellcube::aggregate {

// Transforms a cell's values, each distinct small count once: counts are mostly small
// integers that repeat within a cell, and log1p dominates the cost of aggregating. With
// a layout, the bin of each value above 0 too (the same memo).
class CellTransform {
 public:
  CellTransform(Transform t, double scale, const histogram::Layout* layout)
      : t_(t), scale_(scale), layout_(layout) {
    std::fill(std::begin(memo_), std::end(memo_), -1.0);
  }
  // The transformed value; *bin its bin when it is above 0 and there is a layout (else 0).
  double operator()(double raw, int* bin) {
    const int small = raw >= 0 && raw < kMemo ? static_cast<int>(raw) : -1;
    if (small >= 0 && static_cast<double>(small) == raw) {
      if (memo_[small] < 0) {
        memo_[small] = ApplyTransform(t_, raw, scale_);
        bins_[small] = BinOf(memo_[small]);
      }
      *bin = bins_[small];
      return memo_[small];
    }
    const double v = ApplyTransform(t_, raw, scale_);
    *bin = BinOf(v);
    return v;
  }

 private:
  int BinOf(double v) const { return layout_ && v > 0 && v < kInf ? layout_->BinOf(v) : 0; }
  static constexpr int kMemo = 64;
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  Transform t_;
  double scale_;
  const histogram::Layout* layout_;
  double memo_[kMemo];
  int bins_[kMemo];
};

// Sets *scale to row m's cp10k scale (0 for the other transforms); a total that is not
// finite returns the value that broke it, not the first value it would spoil.
inline std::optional<BadValue> RowScale(const SparseBlock& block, int64_t m, Transform t,
                                        double* scale) {
  *scale = 0;
  if (t != Transform::kCp10kLog1p) return std::nullopt;
  const int64_t lo = block.offsets[m], hi = block.offsets[m + 1];
  double total = 0;
  for (int64_t k = lo; k < hi; ++k) total += block.values[k];
  if (!std::isfinite(total)) {
    for (int64_t k = lo; k < hi; ++k)
      if (!std::isfinite(block.values[k]))
        return BadValue{block.major_begin + m, block.minor[k], block.values[k], block.values[k]};
  }
  *scale = Cp10kScale(total);
  return std::nullopt;
}

}  // namespace cellcube::aggregate
