#include "aggregate/tiled_rows.h"

#include <emmintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <new>

#include "aggregate/cell_transform.h"

namespace cellcube::aggregate {
namespace {

// Pending values are kept in chunks of one tile each, chained per tile; chunks are cut
// from slabs taken from the SlabPool as needed (4 KB pages: on this class of virtual
// machine, asking for huge pages made fresh memory cost up to five times more to fault
// in, as the kernel compacted memory to find them).
constexpr uint32_t kChunkValues = 256;  // 4 KB
constexpr uint32_t kMaxSlabShift = 13;  // slabs of at most 8,192 chunks: 32 MB
constexpr uint32_t kNoChunk = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kTileBudget = uint64_t{512} << 10;  // half of this machine class's L2

}  // namespace

SlabPool::~SlabPool() { Release(); }

void* SlabPool::Take(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < free_.size(); ++i)
      if (free_[i].second == bytes) {
        void* p = free_[i].first;
        free_[i] = free_.back();
        free_.pop_back();
        return p;
      }
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

void SlabPool::Give(void* slab, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.emplace_back(slab, bytes);
}

void SlabPool::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [p, bytes] : free_) ::munmap(p, bytes);
  free_.clear();
}

// One worker's pending values. Appending to thousands of tiles at random would read
// every destination line before writing it (and, in fresh pages, wait for the kernel's
// zeroed copy): values are staged four to a cache line per tile instead, and a full line
// goes out with streaming stores, which write it without reading it.
struct TiledRows::Lane {
  static constexpr uint32_t kLineValues = 64 / sizeof(PendingValue);
  struct alignas(64) Line {
    PendingValue values[kLineValues];
  };
  struct Bucket {
    uint32_t first = kNoChunk, last = kNoChunk;
    uint32_t fill = kChunkValues;  // values in the last chunk; full = none yet
  };
  SlabPool* pool = nullptr;
  std::vector<PendingValue*> slabs;  // taken from the pool, given back at the end
  std::vector<uint32_t> next;        // per chunk: the tile's next chunk
  std::vector<Bucket> buckets;       // per tile
  std::vector<Line> staged;          // per tile: values not yet in a chunk
  std::vector<uint8_t> n_staged;
  uint32_t chunks = 0;
  int slab_shift = kMaxSlabShift;         // chunks per slab: a power of two
  std::atomic<uint64_t>* room = nullptr;  // chunks left to every lane
  bool overflow = false, negative = false;
  int64_t above = 0;

  PendingValue* Chunk(uint32_t c) const {
    return slabs[c >> slab_shift] +
           static_cast<size_t>(c & ((1u << slab_shift) - 1)) * kChunkValues;
  }
  size_t SlabBytes() const { return sizeof(PendingValue) * kChunkValues << slab_shift; }
  ~Lane() {
    for (PendingValue* slab : slabs) pool->Give(slab, SlabBytes());
  }
  bool TakeRoom() {
    uint64_t left = room->load(std::memory_order_relaxed);
    do {
      if (left == 0) return false;
    } while (!room->compare_exchange_weak(left, left - 1, std::memory_order_relaxed));
    return true;
  }
  // Appends to tile t; false when out of room.
  bool Append(int32_t t, const PendingValue& value) {
    const auto i = static_cast<size_t>(t);
    Line& line = staged[i];
    line.values[n_staged[i]++] = value;
    if (n_staged[i] < kLineValues) return true;
    n_staged[i] = 0;
    Bucket& b = buckets[i];
    if (b.fill == kChunkValues) {
      if (chunks == kNoChunk - 1 || !TakeRoom()) return false;
      const uint32_t c = chunks++;
      if ((c >> slab_shift) >= slabs.size())
        slabs.push_back(static_cast<PendingValue*>(pool->Take(SlabBytes())));
      next.push_back(kNoChunk);
      (b.last == kNoChunk ? b.first : next[b.last]) = c;
      b.last = c;
      b.fill = 0;
    }
    auto* to = reinterpret_cast<__m128i*>(Chunk(b.last) + b.fill);
    const auto* from = reinterpret_cast<const __m128i*>(line.values);
    for (int k = 0; k < 4; ++k) _mm_stream_si128(to + k, _mm_load_si128(from + k));
    b.fill += kLineValues;
    return true;
  }
};

TiledRows::TiledRows(int32_t gene_begin, int32_t gene_end, int32_t tile_genes, int lanes,
                     uint64_t max_values, const histogram::Layout* layout, SlabPool* pool)
    : gene_begin_(gene_begin),
      gene_end_(gene_end),
      tile_genes_(tile_genes),
      tile_shift_(__builtin_ctz(static_cast<unsigned>(tile_genes))),
      first_tile_(gene_begin / tile_genes),
      n_tiles_(gene_end > gene_begin ? (gene_end - 1) / tile_genes - first_tile_ + 1 : 0),
      layout_(layout) {
  const uint64_t room = std::max<uint64_t>(1, max_values / kChunkValues);
  room_.store(room);
  // Slabs of an eighth of each lane's share at most: mapped memory stays within the room
  // and one slab more per lane.
  const int n_lanes = std::max(1, lanes);
  int slab_shift = kMaxSlabShift;
  while (slab_shift > 0 && (uint64_t{1} << slab_shift) * 8 * n_lanes > room) --slab_shift;
  for (int l = 0; l < n_lanes; ++l) {
    auto lane = std::make_unique<Lane>();
    lane->slab_shift = slab_shift;
    lane->pool = pool;
    lane->buckets.resize(static_cast<size_t>(n_tiles_));
    lane->staged.resize(static_cast<size_t>(n_tiles_));
    lane->n_staged.resize(static_cast<size_t>(n_tiles_));
    lane->room = &room_;
    lanes_.push_back(std::move(lane));
  }
}

TiledRows::~TiledRows() = default;

int32_t TiledRows::TileGenesFor(int32_t n_groups, const HistogramSpec* histograms) {
  int32_t genes = kMaxTileGenes;
  while (genes > 1) {
    uint64_t bytes = Accumulator::BytesFor(n_groups, genes);
    if (histograms) bytes += Accumulator::HistogramBytesFor(*histograms->n_cells, genes);
    if (bytes <= kTileBudget) break;
    genes /= 2;
  }
  return genes;
}

std::pair<int32_t, int32_t> TiledRows::TileRange(int32_t t) const {
  const int32_t lo = (first_tile_ + t) * tile_genes_;
  return {std::max(lo, gene_begin_), std::min(lo + tile_genes_, gene_end_)};
}

std::optional<BadValue> TiledRows::Partition(const SparseBlock& block, const CellContext& cells,
                                             int lane_index) {
  Lane& lane = *lanes_[static_cast<size_t>(lane_index)];
  if (lane.overflow) return std::nullopt;
  const int32_t* rank = cells.gene_rank ? cells.gene_rank->data() : nullptr;
  for (int64_t m = 0; m < block.major_count; ++m) {
    const int64_t cell = block.major_begin + m;
    const int64_t lo = block.offsets[m], hi = block.offsets[m + 1];
    double scale = 0;
    if (auto bad = RowScale(block, m, cells.transform, &scale)) return bad;
    CellTransform transform(cells.transform, scale, layout_);
    for (int64_t k = lo; k < hi; ++k) {
      const int32_t gene = rank ? rank[block.minor[k]] : block.minor[k];
      if (gene < gene_begin_ || gene >= gene_end_) continue;  // checked in its own pass
      const double raw = block.values[k];
      int bin;
      const double v = transform(raw, &bin);
      if (!std::isfinite(v)) return BadValue{cell, block.minor[k], raw, v};
      lane.negative |= v < 0;
      if (layout_ && v > 0) lane.above += v > layout_->max();
      const int32_t tile = gene >> tile_shift_;  // tiles are a power of two of genes
      const PendingValue value{v, static_cast<uint32_t>(cell),
                               static_cast<uint16_t>(gene - (tile << tile_shift_)),
                               static_cast<uint8_t>(bin), 0};
      if (!lane.Append(tile - first_tile_, value)) {
        lane.overflow = true;
        break;
      }
    }
    if (lane.overflow) break;
  }
  _mm_sfence();  // the streamed lines visible before the block is handed back
  return std::nullopt;
}

bool TiledRows::overflowed() const {
  return std::any_of(lanes_.begin(), lanes_.end(), [](const auto& l) { return l->overflow; });
}

bool TiledRows::saw_negative() const {
  return std::any_of(lanes_.begin(), lanes_.end(), [](const auto& l) { return l->negative; });
}

int64_t TiledRows::above_max() const {
  int64_t above = 0;
  for (const auto& l : lanes_) above += l->above;
  return above;
}

namespace {

// Reads one lane's values of one tile, in order: its chunks, then its staged line.
class LaneCursor {
 public:
  LaneCursor(const PendingValue* const* chunks, const uint32_t* counts, size_t n_chunks)
      : chunks_(chunks), counts_(counts), n_chunks_(n_chunks) {
    Skip();
  }
  bool done() const { return part_ == n_chunks_; }
  uint32_t cell() const { return chunks_[part_][at_].cell; }
  // The values from here on in this part whose cell is below `bound`, and moves past them.
  std::pair<const PendingValue*, size_t> TakeBelow(uint64_t bound) {
    const PendingValue* p = chunks_[part_];
    const uint32_t from = at_;
    while (at_ < counts_[part_] && p[at_].cell < bound) ++at_;
    const std::pair<const PendingValue*, size_t> run{p + from, at_ - from};
    Skip();
    return run;
  }

 private:
  void Skip() {
    while (part_ < n_chunks_ && at_ == counts_[part_]) {
      ++part_;
      at_ = 0;
    }
  }
  const PendingValue* const* chunks_;
  const uint32_t* counts_;
  size_t n_chunks_, part_ = 0;
  uint32_t at_ = 0;
};

}  // namespace

std::optional<BadValue> TiledRows::AccumulateTile(int32_t t, const CellContext& cells,
                                                  Accumulator* acc) const {
  const int32_t tile_start = (first_tile_ + t) * tile_genes_;
  // The accumulator starts at the tile's first gene, which a pending value counts from;
  // a tile clipped by the range's start has no values below it.
  acc->Reset(tile_start, tile_start + tile_genes_);
  const auto i = static_cast<size_t>(t);
  // Each lane holds the tile's values of its blocks in cell order, and no two lanes
  // share a cell: merging them by cell restores the matrix's order.
  std::vector<std::vector<const PendingValue*>> parts(lanes_.size());
  std::vector<std::vector<uint32_t>> counts(lanes_.size());
  std::vector<LaneCursor> cursors;
  for (size_t l = 0; l < lanes_.size(); ++l) {
    const Lane& lane = *lanes_[l];
    const Lane::Bucket& b = lane.buckets[i];
    for (uint32_t c = b.first; c != kNoChunk; c = lane.next[c]) {
      parts[l].push_back(lane.Chunk(c));
      counts[l].push_back(c == b.last ? b.fill : kChunkValues);
    }
    parts[l].push_back(lane.staged[i].values);
    counts[l].push_back(lane.n_staged[i]);
    cursors.emplace_back(parts[l].data(), counts[l].data(), parts[l].size());
  }
  for (;;) {
    LaneCursor* first = nullptr;
    uint64_t bound = UINT64_MAX;  // the next cell of every other lane
    for (LaneCursor& c : cursors) {
      if (c.done()) continue;
      if (!first || c.cell() < first->cell()) {
        if (first) bound = std::min<uint64_t>(bound, first->cell());
        first = &c;
      } else {
        bound = std::min<uint64_t>(bound, c.cell());
      }
    }
    if (!first) return std::nullopt;
    const auto [values, n] = first->TakeBelow(bound);
    if (auto bad = acc->AddPending(values, n, cells)) return bad;
  }
}

}  // namespace cellcube::aggregate
