// Row blocks accumulated tile by tile, for accumulators far larger than the caches
// (docs/BUILD.md "How a build uses the caches").
//
// Added straight into a full accumulator, each stored value of a row block lands on a
// random slot of hundreds of megabytes: one DRAM miss per value. Instead, a first pass
// transforms each value and appends it to the pending values of its tile (a few genes
// whose slots, for every group, fit in half an L2 cache); after the whole pass, each
// tile's values are added into a small accumulator of that tile alone, which stays in
// the cache, and its entries are emitted. A tile holds its values in cell order, so the
// adds are those of Accumulator::AddRows in the same order: the same bits.
//
// Threads: the first pass has one lane per thread, each fed its own blocks (every block
// to one lane), in increasing order of cells; a tile's values in each lane are then in
// cell order, and merging the lanes by cell gives the matrix's order whatever the
// number of threads. Tiles may be accumulated on any thread, each into its own
// Accumulator.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "aggregate/accumulator.h"
#include "cellcube/sparse_block.h"
#include "histogram/histogram.h"

namespace cellcube::aggregate {

// Memory for pending values, kept from one pass and dataset to the next: fresh pages
// cost a fault and the kernel's zeroing each, a third of a wide build's time when every
// dataset mapped its own. Thread-safe.
class SlabPool {
 public:
  SlabPool() = default;
  ~SlabPool();
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;
  // A slab of `bytes`: one given back of that size, or fresh memory (throws
  // std::bad_alloc when there is none).
  void* Take(size_t bytes);
  // Keeps `slab` (from Take) for the next Take.
  void Give(void* slab, size_t bytes);
  // Unmaps the slabs kept: before other work needs the memory.
  void Release();

 private:
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> free_;
};

class TiledRows {
 public:
  // The genes [gene_begin, gene_end) in tiles of `tile_genes` (a power of two:
  // TileGenesFor), for `lanes` partitioning threads, holding at most `max_values` pending values
  // (beyond that: overflowed()), in slabs from `pool`; `layout` (may be null: no
  // histograms) and `pool` must outlive it.
  TiledRows(int32_t gene_begin, int32_t gene_end, int32_t tile_genes, int lanes,
            uint64_t max_values, const histogram::Layout* layout, SlabPool* pool);
  ~TiledRows();
  TiledRows(const TiledRows&) = delete;
  TiledRows& operator=(const TiledRows&) = delete;

  // Genes per tile so that a tile's accumulator (statistics and histograms) for these
  // groups fits in about half an L2 cache: a power of two from 1 to kMaxTileGenes.
  static int32_t TileGenesFor(int32_t n_groups, const HistogramSpec* histograms);
  static constexpr int32_t kMaxTileGenes = 64;
  // Bytes per pending value, for planning memory.
  static constexpr uint64_t kBytesPerValue = sizeof(PendingValue);

  // Pass one: transforms the values of a row block whose gene is in range and appends
  // them to their tiles in `lane`. A lane's blocks must come in increasing order of
  // cells, and no cell in two lanes. Returns the first value that is not finite (the
  // block is then partly added). Once the pending values reach max_values the rest is
  // dropped and overflowed() says so. Thread-safe for distinct lanes.
  std::optional<BadValue> Partition(const SparseBlock& block, const CellContext& cells, int lane);
  // Whether some lane ran out of room: the pass must be redone with fewer genes.
  bool overflowed() const;

  int32_t tile_genes() const { return tile_genes_; }
  int32_t n_tiles() const { return n_tiles_; }
  // Tile t's genes, within the range.
  std::pair<int32_t, int32_t> TileRange(int32_t t) const;
  // The tile holding `gene` (in range).
  int32_t TileOf(int32_t gene) const { return gene / tile_genes_ - first_tile_; }

  // Pass two: resets `acc` (made for at least tile_genes() genes, with the pass's
  // groups and histograms) to tile t and adds its pending values. Returns the first
  // duplicate value. Thread-safe for distinct accumulators.
  std::optional<BadValue> AccumulateTile(int32_t t, const CellContext& cells,
                                         Accumulator* acc) const;

  // Whether some value partitioned was below 0 after the transform.
  bool saw_negative() const;
  // Values partitioned above the histograms' upper edge.
  int64_t above_max() const;

 private:
  struct Lane;  // one worker's pending values
  int32_t gene_begin_, gene_end_, tile_genes_, tile_shift_, first_tile_, n_tiles_;
  const histogram::Layout* layout_;
  std::atomic<uint64_t> room_;  // chunks every lane may still take
  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace cellcube::aggregate
