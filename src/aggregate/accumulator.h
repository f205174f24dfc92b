// Dense (cell group × gene) accumulators of the additive statistics nnz, sum and
// sumsq over transformed values, for one dataset and one range of genes. Each worker
// thread owns one; they are combined at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "aggregate/transform.h"
#include "cellcube/sparse_block.h"

namespace cellcube::aggregate {

// The first value that is not finite before or after the transform.
struct BadValue {
  int64_t cell = 0;
  int64_t gene = 0;
  double raw = 0;
  double transformed = 0;
};

// What a block needs to know about the cells.
struct CellContext {
  const std::vector<int32_t>* group_of_cell = nullptr;
  Transform transform = Transform::kNone;
  // Per-cell cp10k scale, when the matrix is read by columns (CSC); for row blocks
  // the scale is computed from each row itself.
  const std::vector<double>* cell_scale = nullptr;
};

class Accumulator {
 public:
  Accumulator(int32_t n_groups, int32_t gene_begin, int32_t gene_end);

  // Adds every value of `block` whose gene lies in this accumulator's range.
  // `by_rows`: majors are cells (CSR, dense); else majors are genes (CSC).
  // Returns the first bad value, if any (the block is then partly added).
  std::optional<BadValue> Add(const SparseBlock& block, bool by_rows, const CellContext& cells);

  // Adds another accumulator of the same shape.
  void Merge(const Accumulator& other);

  int32_t n_groups() const { return n_groups_; }
  int32_t gene_begin() const { return gene_begin_; }
  int32_t gene_end() const { return gene_end_; }
  size_t Slot(int32_t group, int32_t gene) const {
    return static_cast<size_t>(group) * width_ + static_cast<size_t>(gene - gene_begin_);
  }
  const std::vector<uint32_t>& nnz() const { return nnz_; }
  const std::vector<double>& sum() const { return sum_; }
  const std::vector<double>& sumsq() const { return sumsq_; }

  // Bytes an accumulator of this shape needs.
  static uint64_t BytesFor(int64_t n_groups, int64_t n_genes) {
    return static_cast<uint64_t>(n_groups) * static_cast<uint64_t>(n_genes) *
           (sizeof(uint32_t) + 2 * sizeof(double));
  }

 private:
  int32_t n_groups_, gene_begin_, gene_end_;
  size_t width_;
  std::vector<uint32_t> nnz_;
  std::vector<double> sum_, sumsq_;
};

// Row totals (for cp10k) of the cells in a block of columns (CSC), added into `totals`;
// the first value that is not finite stops it and is returned.
std::optional<BadValue> AddColumnBlockToRowTotals(const SparseBlock& block,
                                                  std::vector<double>* totals);

}  // namespace cellcube::aggregate
