// Dense (cell group × gene) accumulators of the statistics nnz, sum and the second
// moment (SlotStats, SlotM2) over transformed values, for one dataset and one range
// of genes.
//
// Determinism: a slot's sum is the same bits whatever the number of threads, because
// every slot has exactly one owner that adds its values in cell order. Row blocks
// (CSR, dense) are handed to every worker in block order and each worker adds only the
// genes it owns (OwnerOfGene); column blocks (CSC) hold whole genes, so any worker may
// add one, and one block is the only source of its genes' slots.
//
// Speed: one slot's three statistics are adjacent (one cache line per value instead of
// three), rows are cache-line aligned, and the array asks for transparent huge pages:
// at 20,000 genes the array is far larger than the caches and the updates are random.
//
// Histograms (docs/FORMAT.md "Histograms"): with a HistogramSpec, each slot also bins
// its values above 0 into 64 bins, in a second array beside the statistics whose slot
// kind follows from the group's cell count (known before the pass), so that a small
// group costs little: a list of one bin byte per expressing cell for groups of at most
// 64 cells (the byte at the slot's nnz before the value), 64 uint8 counts up to 255
// cells, 64 uint16 counts up to 65,535, else 64 uint32 counts. The same owner adds a
// slot's statistics and bins, so the bins are as deterministic as the sums.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "aggregate/transform.h"
#include "cellcube/sparse_block.h"
#include "histogram/histogram.h"

namespace cellcube::aggregate {

// The first value that is not finite before or after the transform, or (`duplicate`)
// a second value of one cell and gene: a matrix with duplicate indices in a row, whose
// expressing cells would outnumber its group's cells.
struct BadValue {
  int64_t cell = 0;
  int64_t gene = 0;
  double raw = 0;
  double transformed = 0;
  bool duplicate = false;
};

// What the histograms of an accumulator need: the layout and each group's cell count.
struct HistogramSpec {
  histogram::Layout layout;
  const std::vector<int64_t>* n_cells = nullptr;  // per group
};

// What a block needs to know about the cells and genes.
struct CellContext {
  const std::vector<int32_t>* group_of_cell = nullptr;
  Transform transform = Transform::kNone;
  // Per-cell cp10k scale, when the matrix is read by columns (CSC); for row blocks
  // the scale is computed from each row itself.
  const std::vector<double>* cell_scale = nullptr;
  // The accumulator's gene coordinate of each of the matrix's genes (the order genes
  // are written in); null = the matrix's own order.
  const std::vector<int32_t>* gene_rank = nullptr;
};

// One slot: the statistics of one (group, gene). The squares are taken about the
// slot's first value (`shift`), so that m2 of a group whose values barely differ is
// not lost to cancellation: Σ(v − shift)² is small where Σv² would be huge (docs/FORMAT.md).
struct SlotStats {
  double sum = 0;         // Σv over the stored values
  double shifted_sq = 0;  // Σ(v − shift)² over the stored values
  double shift = 0;       // the first stored value, in cell order
  uint32_t nnz = 0;       // values > 0
  uint32_t count = 0;     // stored values (explicit zeros included)
};
static_assert(sizeof(SlotStats) == 32);  // two per cache line, never straddling one

// m2 = Σ(v − sum/n)² over all `n_cells` cells of the group, the cells without a stored
// value counting as zeros, from the slot's shifted sums; rounding may leave a tiny
// negative, which is 0.
inline double SlotM2(const SlotStats& s, int64_t n_cells) {
  const auto n = static_cast<double>(n_cells);
  const double zeros = n - static_cast<double>(s.count);
  const double deviation = s.sum - n * s.shift;  // Σ(v − shift) over all cells
  const double m2 = s.shifted_sq + zeros * s.shift * s.shift - deviation * deviation / n;
  return m2 < 0 ? 0 : m2;
}

// A transformed value waiting for its slot (aggregate/tiled_rows.h): its cell, its gene
// as an offset from its tile's first gene, and its bin (when above 0 and binned).
struct PendingValue {
  double v;
  uint32_t cell;
  uint16_t gene;
  uint8_t bin;
  uint8_t unused;
};
static_assert(sizeof(PendingValue) == 16);

class Accumulator {
 public:
  // Genes [gene_begin, gene_end) in the CellContext's gene coordinate; with `histograms`
  // (which must outlive the accumulator) the slots also bin their values.
  Accumulator(int32_t n_groups, int32_t gene_begin, int32_t gene_end,
              const HistogramSpec* histograms = nullptr);

  // Which of `workers` owns `gene` for AddRows: blocks of kOwnerSpan genes in turn
  // (whole cache lines, so owners never share one).
  static int OwnerOfGene(int32_t gene, int workers) {
    const auto span = static_cast<uint32_t>(gene) / kOwnerSpan;
    // Called for every value: no division for the usual one or two workers.
    if (workers <= 2) return static_cast<int>(span & static_cast<uint32_t>(workers - 1));
    return static_cast<int>(span % static_cast<uint32_t>(workers));
  }
  static constexpr int32_t kOwnerSpan = 64;

  // Adds the values of a row block (majors are cells) whose gene lies in this range and
  // is owned by `worker` of `workers`. Returns the first bad value among those it
  // looked at (the block is then partly added). Thread-safe for distinct workers.
  std::optional<BadValue> AddRows(const SparseBlock& block, const CellContext& cells, int worker,
                                  int workers);
  // Adds every value of a column block (majors are genes) in this range. Thread-safe for
  // blocks of distinct genes.
  std::optional<BadValue> AddColumns(const SparseBlock& block, const CellContext& cells);

  // Empties the accumulator and makes it cover the genes [gene_begin, gene_end), no more
  // genes than it was made for: one tile after another in the same memory.
  void Reset(int32_t gene_begin, int32_t gene_end);
  // Adds values of this range, already transformed, in their order (a tile's values:
  // aggregate/tiled_rows.h); the same adds as AddRows of the values they came from.
  // Returns the first duplicate value (the rest are then not added).
  std::optional<BadValue> AddPending(const PendingValue* values, size_t n,
                                     const CellContext& cells);

  // Whether some value added so far was below 0 after the transform (scaled data: the
  // store flags such a dataset, docs/FORMAT.md "Negative values").
  bool saw_negative() const { return saw_negative_.load(std::memory_order_relaxed); }
  // Values binned above the histograms' upper edge (counted in the top bin) so far.
  int64_t above_max() const { return above_max_.load(std::memory_order_relaxed); }
  bool has_histograms() const { return hist_ != nullptr; }

  int32_t n_groups() const { return n_groups_; }
  int32_t gene_begin() const { return gene_begin_; }
  int32_t gene_end() const { return gene_end_; }
  const SlotStats& At(int32_t group, int32_t gene) const {
    return slots_[static_cast<size_t>(group) * width_ + static_cast<size_t>(gene - gene_begin_)];
  }
  // Whether some value of the slot was nonzero: the entries a store keeps.
  // (A nonzero value is positive, counted by nnz, or makes some sum negative: mixed-sign
  // values that cancel exactly have nnz > 0.)
  static bool Stored(const SlotStats& s) { return s.nnz != 0 || s.sum != 0; }

  // Adds the bins of a slot's values (with histograms) into `bins`.
  void AddBinsOf(int32_t group, int32_t gene, histogram::Counts* bins) const;
  // Appends the slot's histogram record (histogram/record.h) to `out`.
  void AppendRecordOf(int32_t group, int32_t gene, std::vector<uint8_t>* out) const;

  // Bytes an accumulator of this shape needs.
  static uint64_t BytesFor(int64_t n_groups, int64_t n_genes) {
    return static_cast<uint64_t>(n_groups) * static_cast<uint64_t>(RowWidth(n_genes)) *
           sizeof(SlotStats);
  }
  // Bytes its histograms need for groups of `n_cells` cells.
  static uint64_t HistogramBytesFor(const std::vector<int64_t>& n_cells, int64_t n_genes);

  // Calls emit(gene, group, stats) for every stored slot, gene by gene in ascending
  // order, groups ascending within a gene (reads the rows in tiles, not by column).
  template <typename Emit>
  void ForEachStored(Emit&& emit) const {
    ForEachStoredIn(gene_begin_, gene_end_, emit);
  }
  // The same for the genes [from, to) only (within this accumulator's range): callers
  // may visit disjoint ranges from different threads.
  template <typename Emit>
  void ForEachStoredIn(int32_t from, int32_t to, Emit&& emit) const;

 private:
  static size_t RowWidth(int64_t genes) { return static_cast<size_t>((genes + 7) / 8 * 8); }
  struct FreeSlots {
    size_t bytes;
    void operator()(SlotStats* p) const;
  };

  // How a group's histogram slots hold their bins.
  enum class HistKind : uint8_t { kList, kCount8, kCount16, kCount32 };
  static HistKind KindFor(int64_t n_cells);
  static size_t SlotBytes(HistKind kind, int64_t n_cells);
  struct FreeBytes {
    size_t bytes;
    void operator()(uint8_t* p) const;
  };
  // Adds value v > 0 to the bins of `group`'s slot for `gene` whose nnz was `nnz` before
  // it; false when a list is already full (a duplicate value of a cell).
  bool Bin(int32_t group, int32_t gene, uint32_t nnz, int bin);
  uint8_t* HistSlot(int32_t group, int32_t gene) const {
    return hist_.get() + hist_row_[static_cast<size_t>(group)] +
           static_cast<size_t>(gene - gene_begin_) * hist_slot_[static_cast<size_t>(group)];
  }

  int32_t n_groups_, gene_begin_, gene_end_;
  int32_t capacity_;  // the genes it was made for
  size_t width_;      // slots per row: the genes rounded up to whole cache lines
  std::unique_ptr<SlotStats[], FreeSlots> slots_;
  std::atomic<bool> saw_negative_{false};  // set by any worker; read after the pass
  // Histograms (absent without a HistogramSpec): per group its kind, slot bytes and
  // where its row starts (cache-line aligned) in hist_.
  histogram::Layout layout_;
  std::vector<HistKind> hist_kind_;
  std::vector<uint32_t> hist_slot_;
  std::vector<uint64_t> hist_row_;
  std::vector<int64_t> hist_cells_;  // per group: its cells, the most it can bin
  std::unique_ptr<uint8_t[], FreeBytes> hist_;
  std::atomic<int64_t> above_max_{0};
};

// Row totals (for cp10k) of the cells in a block of columns (CSC), added into
// `totals` for the cells `worker` of `workers` owns (runs of 512 cells in turn), so
// blocks handed to every worker in order give every total the same bits. The first
// value that is not finite stops it and is returned.
std::optional<BadValue> AddColumnBlockToRowTotals(const SparseBlock& block, int worker, int workers,
                                                  std::vector<double>* totals);

template <typename Emit>
void Accumulator::ForEachStoredIn(int32_t from, int32_t to, Emit&& emit) const {
  constexpr int32_t kTile = 32;
  struct Hit {
    int32_t group;
    const SlotStats* stats;
  };
  std::vector<std::vector<Hit>> tile(kTile);
  for (int32_t lo = from; lo < to; lo += kTile) {
    const int32_t hi = std::min(to, lo + kTile);
    for (auto& t : tile) t.clear();
    for (int32_t g = 0; g < n_groups_; ++g) {
      const SlotStats* row = &slots_[static_cast<size_t>(g) * width_];
      for (int32_t gene = lo; gene < hi; ++gene) {
        const SlotStats& s = row[gene - gene_begin_];
        if (Stored(s)) tile[gene - lo].push_back({g, &s});
      }
    }
    for (int32_t gene = lo; gene < hi; ++gene)
      for (const Hit& h : tile[gene - lo]) emit(gene, h.group, *h.stats);
  }
}

}  // namespace cellcube::aggregate
