#include "aggregate/accumulator.h"

#include "aggregate/cell_transform.h"
#include "histogram/record.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <new>

namespace cellcube::aggregate {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr int64_t kPrefetchAhead = 12;

// Zeroed memory for the slots; large arrays are 2 MiB-aligned and advised to use huge
// pages (random updates over hundreds of megabytes otherwise miss the TLB each time).
void* AllocateZeroed(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (bytes >= kHugePage) (void)::madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

SlotStats* AllocateSlots(size_t bytes) { return static_cast<SlotStats*>(AllocateZeroed(bytes)); }

constexpr uint64_t kCacheLine = 64;
uint64_t WholeLines(uint64_t bytes) { return (bytes + kCacheLine - 1) / kCacheLine * kCacheLine; }

inline void Update(SlotStats& s, double v) {
  if (s.count == 0) s.shift = v;
  const double d = v - s.shift;
  s.nnz += v > 0;
  s.count += 1;
  s.sum += v;
  s.shifted_sq += d * d;
}

// The matrix's own index of accumulator gene `gene`, for an error message.
int64_t MatrixGene(const CellContext& cells, int32_t gene) {
  if (!cells.gene_rank) return gene;
  const auto& rank = *cells.gene_rank;
  return std::find(rank.begin(), rank.end(), gene) - rank.begin();
}

}  // namespace

void Accumulator::FreeSlots::operator()(SlotStats* p) const {
  if (p) ::munmap(p, bytes);
}

void Accumulator::FreeBytes::operator()(uint8_t* p) const {
  if (p) ::munmap(p, bytes);
}

Accumulator::HistKind Accumulator::KindFor(int64_t n_cells) {
  if (n_cells <= histogram::kBins) return HistKind::kList;
  if (n_cells <= UINT8_MAX) return HistKind::kCount8;
  if (n_cells <= UINT16_MAX) return HistKind::kCount16;
  return HistKind::kCount32;
}

size_t Accumulator::SlotBytes(HistKind kind, int64_t n_cells) {
  switch (kind) {
    case HistKind::kList:
      return static_cast<size_t>(n_cells);  // one byte per expressing cell, at most all
    case HistKind::kCount8:
      return histogram::kBins;
    case HistKind::kCount16:
      return histogram::kBins * sizeof(uint16_t);
    case HistKind::kCount32:
      break;
  }
  return histogram::kBins * sizeof(uint32_t);
}

uint64_t Accumulator::HistogramBytesFor(const std::vector<int64_t>& n_cells, int64_t n_genes) {
  uint64_t bytes = 0;
  for (int64_t n : n_cells)
    bytes += WholeLines(static_cast<uint64_t>(n_genes) * SlotBytes(KindFor(n), n));
  return bytes;
}

Accumulator::Accumulator(int32_t n_groups, int32_t gene_begin, int32_t gene_end,
                         const HistogramSpec* histograms)
    : n_groups_(n_groups),
      gene_begin_(gene_begin),
      gene_end_(gene_end),
      capacity_(gene_end - gene_begin),
      width_(RowWidth(gene_end - gene_begin)),
      slots_(AllocateSlots(BytesFor(n_groups, gene_end - gene_begin)),
             FreeSlots{BytesFor(n_groups, gene_end - gene_begin)}),
      hist_(nullptr, FreeBytes{0}) {
  if (!histograms) return;
  layout_ = histograms->layout;
  const std::vector<int64_t>& cells = *histograms->n_cells;
  uint64_t at = 0;
  for (int32_t g = 0; g < n_groups; ++g) {
    const int64_t n = cells[static_cast<size_t>(g)];
    hist_kind_.push_back(KindFor(n));
    hist_slot_.push_back(static_cast<uint32_t>(SlotBytes(hist_kind_.back(), n)));
    hist_row_.push_back(at);
    at += WholeLines(static_cast<uint64_t>(gene_end - gene_begin) * hist_slot_.back());
  }
  hist_cells_.assign(cells.begin(), cells.begin() + n_groups);
  // One byte more than the rows, so that an accumulator of groups without genes still
  // has histograms.
  hist_ = std::unique_ptr<uint8_t[], FreeBytes>(static_cast<uint8_t*>(AllocateZeroed(at + 1)),
                                                FreeBytes{at + 1});
}

bool Accumulator::Bin(int32_t group, int32_t gene, uint32_t nnz, int bin) {
  const auto g = static_cast<size_t>(group);
  if (nnz >= static_cast<uint64_t>(hist_cells_[g])) return false;  // more than its cells
  uint8_t* slot = HistSlot(group, gene);
  switch (hist_kind_[g]) {
    case HistKind::kList:
      slot[nnz] = static_cast<uint8_t>(bin);
      break;
    case HistKind::kCount8:
      ++slot[bin];
      break;
    case HistKind::kCount16:
      ++reinterpret_cast<uint16_t*>(slot)[bin];
      break;
    case HistKind::kCount32:
      ++reinterpret_cast<uint32_t*>(slot)[bin];
      break;
  }
  return true;
}

void Accumulator::AddBinsOf(int32_t group, int32_t gene, histogram::Counts* bins) const {
  if (!hist_) return;
  const uint8_t* slot = HistSlot(group, gene);
  switch (hist_kind_[static_cast<size_t>(group)]) {
    case HistKind::kList:
      for (uint32_t i = 0; i < At(group, gene).nnz; ++i) ++(*bins)[slot[i]];
      return;
    case HistKind::kCount8:
      for (int b = 0; b < histogram::kBins; ++b) (*bins)[static_cast<size_t>(b)] += slot[b];
      return;
    case HistKind::kCount16:
      for (int b = 0; b < histogram::kBins; ++b)
        (*bins)[static_cast<size_t>(b)] += reinterpret_cast<const uint16_t*>(slot)[b];
      return;
    case HistKind::kCount32:
      for (int b = 0; b < histogram::kBins; ++b)
        (*bins)[static_cast<size_t>(b)] += reinterpret_cast<const uint32_t*>(slot)[b];
      return;
  }
}

void Accumulator::AppendRecordOf(int32_t group, int32_t gene, std::vector<uint8_t>* out) const {
  if (!hist_) return;
  const uint32_t nnz = At(group, gene).nnz;
  if (hist_kind_[static_cast<size_t>(group)] == HistKind::kList) {
    // A list holds its cells' bins in cell order: sorted, it is (mostly) the record.
    uint8_t sorted[64];
    const size_t n = std::min<size_t>(nnz, sizeof sorted);
    std::copy_n(HistSlot(group, gene), n, sorted);
    std::sort(sorted, sorted + n);
    histogram::AppendSortedRecord(sorted, n, out);
    return;
  }
  if (hist_kind_[static_cast<size_t>(group)] == HistKind::kCount8) {
    histogram::AppendByteCountsRecord(HistSlot(group, gene), nnz, out);
    return;
  }
  histogram::Counts bins{};
  AddBinsOf(group, gene, &bins);
  histogram::AppendRecord(bins, nnz, out);
}

std::optional<BadValue> Accumulator::AddRows(const SparseBlock& block, const CellContext& cells,
                                             int worker, int workers) {
  const auto& group_of_cell = *cells.group_of_cell;
  bool negative = false;
  int64_t above = 0;
  const bool binning = hist_ != nullptr;
  const int32_t* rank = cells.gene_rank ? cells.gene_rank->data() : nullptr;
  for (int64_t m = 0; m < block.major_count; ++m) {
    const int64_t cell = block.major_begin + m;
    const int64_t lo = block.offsets[m], hi = block.offsets[m + 1];
    double scale = 0;
    if (auto bad = RowScale(block, m, cells.transform, &scale)) return bad;
    const int32_t group = group_of_cell[cell];
    SlotStats* row = &slots_[static_cast<size_t>(group) * width_];
    CellTransform transform(cells.transform, scale, binning ? &layout_ : nullptr);
    auto mine = [&](int32_t gene) {
      return gene >= gene_begin_ && gene < gene_end_ && OwnerOfGene(gene, workers) == worker;
    };
    for (int64_t k = lo; k < hi; ++k) {
      // The slots are scattered over far more memory than the caches hold: ask for the
      // slot of a value a little ahead while this one is added.
      if (k + kPrefetchAhead < hi) {
        const int32_t ahead =
            rank ? rank[block.minor[k + kPrefetchAhead]] : block.minor[k + kPrefetchAhead];
        if (mine(ahead)) {
          __builtin_prefetch(&row[ahead - gene_begin_], 1, 3);
          if (binning) __builtin_prefetch(HistSlot(group, ahead), 1, 3);
        }
      }
      const int32_t gene = rank ? rank[block.minor[k]] : block.minor[k];
      // Values of other genes are checked by their owner, in the pass that covers them.
      if (!mine(gene)) continue;
      const double raw = block.values[k];
      int bin;
      const double v = transform(raw, &bin);
      if (!std::isfinite(v)) return BadValue{cell, block.minor[k], raw, v};
      negative |= v < 0;
      SlotStats& slot = row[gene - gene_begin_];
      if (binning && v > 0) {
        if (!Bin(group, gene, slot.nnz, bin)) return BadValue{cell, block.minor[k], raw, v, true};
        above += v > layout_.max();
      }
      Update(slot, v);
    }
  }
  if (negative) saw_negative_.store(true, std::memory_order_relaxed);
  if (above) above_max_.fetch_add(above, std::memory_order_relaxed);
  return std::nullopt;
}

void Accumulator::Reset(int32_t gene_begin, int32_t gene_end) {
  gene_begin_ = gene_begin;
  gene_end_ = std::min(gene_end, gene_begin + capacity_);
  // Only the slots of these genes: a tile of one gene among thousands of groups would
  // otherwise clear every row's whole width each time.
  const auto genes = static_cast<size_t>(gene_end_ - gene_begin_);
  for (size_t g = 0; g < static_cast<size_t>(n_groups_); ++g) {
    std::fill_n(&slots_[g * width_], genes, SlotStats{});
    if (hist_) std::fill_n(hist_.get() + hist_row_[g], genes * hist_slot_[g], uint8_t{0});
  }
}

std::optional<BadValue> Accumulator::AddPending(const PendingValue* values, size_t n,
                                                const CellContext& cells) {
  const int32_t* group_of_cell = cells.group_of_cell->data();
  const bool binning = hist_ != nullptr;
  for (size_t i = 0; i < n; ++i) {
    const PendingValue& p = values[i];
    const int32_t group = group_of_cell[p.cell];
    SlotStats& slot = slots_[static_cast<size_t>(group) * width_ + p.gene];
    if (binning && p.v > 0 && !Bin(group, gene_begin_ + p.gene, slot.nnz, p.bin))
      return BadValue{p.cell, MatrixGene(cells, gene_begin_ + p.gene), p.v, p.v, true};
    Update(slot, p.v);
  }
  return std::nullopt;
}

std::optional<BadValue> Accumulator::AddColumns(const SparseBlock& block,
                                                const CellContext& cells) {
  const auto& group_of_cell = *cells.group_of_cell;
  bool negative = false;
  int64_t above = 0;
  const bool binning = hist_ != nullptr;
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
      const int32_t group = group_of_cell[cell];
      SlotStats& slot = column[static_cast<size_t>(group) * width_];
      if (binning && v > 0) {
        if (!Bin(group, gene, slot.nnz, layout_.BinOf(v)))
          return BadValue{cell, major, raw, v, true};
        above += v > layout_.max();
      }
      Update(slot, v);
    }
  }
  if (negative) saw_negative_.store(true, std::memory_order_relaxed);
  if (above) above_max_.fetch_add(above, std::memory_order_relaxed);
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
