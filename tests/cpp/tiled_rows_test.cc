#include "aggregate/tiled_rows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

namespace cellcube::aggregate {
namespace {

// A row matrix of counts (and a few fractions) over `n_genes`, split into blocks of
// `block_cells` cells.
struct Matrix {
  std::vector<SparseBlock> blocks;
};

Matrix RandomMatrix(int64_t n_cells, int32_t n_genes, int64_t block_cells, std::mt19937* rng) {
  Matrix m;
  for (int64_t begin = 0; begin < n_cells; begin += block_cells) {
    SparseBlock b;
    b.major_begin = begin;
    b.major_count = std::min(block_cells, n_cells - begin);
    b.offsets = {0};
    for (int64_t c = 0; c < b.major_count; ++c) {
      for (int32_t gene = 0; gene < n_genes; ++gene) {
        // A few dense genes, most sparse: tiles of very different sizes.
        const uint32_t density = gene % 37 == 0 ? 2 : 12;
        if ((*rng)() % density != 0) continue;
        b.minor.push_back(gene);
        const uint32_t kind = (*rng)() % 20;
        b.values.push_back(kind == 0 ? 0.0 : kind == 1 ? 2.5 : 1.0 + (*rng)() % 90);
      }
      b.offsets.push_back(static_cast<int64_t>(b.minor.size()));
    }
    m.blocks.push_back(std::move(b));
  }
  return m;
}

// Whether two slots hold the same bits and the same histogram record.
void ExpectSameSlot(const Accumulator& want, const Accumulator& got, int32_t group, int32_t gene) {
  const SlotStats &a = want.At(group, gene), &b = got.At(group, gene);
  ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "group " << group << " gene " << gene;
  std::vector<uint8_t> ra, rb;
  want.AppendRecordOf(group, gene, &ra);
  got.AppendRecordOf(group, gene, &rb);
  ASSERT_EQ(ra, rb) << "group " << group << " gene " << gene;
}

TEST(TiledRows, AddsTheSameBitsAsAddRows) {
  std::mt19937 rng(24);
  const int64_t n_cells = 1500;
  const int32_t n_genes = 300;
  // Groups of every histogram kind: lists (<= 64 cells), 8-bit counts, 16-bit counts.
  std::vector<int32_t> group_of_cell(static_cast<size_t>(n_cells));
  for (auto& g : group_of_cell)
    g = rng() % 4 == 0 ? static_cast<int32_t>(rng() % 40) : 40 + (rng() % 3 == 0);
  const int32_t n_groups = 42;
  std::vector<int64_t> n_cells_of(n_groups, 0);
  for (int32_t g : group_of_cell) ++n_cells_of[static_cast<size_t>(g)];
  ASSERT_GT(n_cells_of[40], 255);
  ASSERT_GT(n_cells_of[41], 64);
  // The store's gene order differs from the matrix's.
  std::vector<int32_t> rank(static_cast<size_t>(n_genes));
  std::iota(rank.begin(), rank.end(), 0);
  std::shuffle(rank.begin(), rank.end(), rng);
  const HistogramSpec spec{histogram::Layout(9.2104), &n_cells_of};
  const CellContext cells{&group_of_cell, Transform::kCp10kLog1p, nullptr, &rank};
  const Matrix m = RandomMatrix(n_cells, n_genes, 97, &rng);

  // A range that starts and ends inside tiles, as a second pass would.
  const int32_t lo = 37, hi = 291;
  Accumulator want(n_groups, lo, hi, &spec);
  for (const SparseBlock& b : m.blocks) ASSERT_FALSE(want.AddRows(b, cells, 0, 1));

  SlabPool pool;  // the second round reuses the first one's slabs, stale values and all
  for (int lanes : {1, 3}) {
    const int32_t tile_genes = 8;
    TiledRows tiles(lo, hi, tile_genes, lanes, uint64_t{1} << 24, &spec.layout, &pool);
    // Blocks dealt to lanes at random, each lane's in increasing order (ShareBlocks).
    for (const SparseBlock& b : m.blocks)
      ASSERT_FALSE(tiles.Partition(b, cells, static_cast<int>(rng() % lanes)));
    ASSERT_FALSE(tiles.overflowed());
    EXPECT_EQ(tiles.above_max(), want.above_max());
    EXPECT_EQ(tiles.saw_negative(), want.saw_negative());
    Accumulator acc(n_groups, 0, tile_genes, &spec);
    int32_t covered = 0;
    for (int32_t t = 0; t < tiles.n_tiles(); ++t) {
      ASSERT_FALSE(tiles.AccumulateTile(t, cells, &acc));
      const auto [tile_lo, tile_hi] = tiles.TileRange(t);
      covered += tile_hi - tile_lo;
      for (int32_t gene = tile_lo; gene < tile_hi; ++gene)
        for (int32_t g = 0; g < n_groups; ++g) ExpectSameSlot(want, acc, g, gene);
    }
    EXPECT_EQ(covered, hi - lo);
  }
}

TEST(TiledRows, TileGenesArePowersOfTwoThatFitTheCache) {
  std::vector<int64_t> small(10, 100), many(500, 100);
  const HistogramSpec few_groups{histogram::Layout(9.0), &small};
  const HistogramSpec many_groups{histogram::Layout(9.0), &many};
  EXPECT_EQ(TiledRows::TileGenesFor(10, &few_groups), TiledRows::kMaxTileGenes);
  const int32_t t = TiledRows::TileGenesFor(500, &many_groups);
  EXPECT_LT(t, TiledRows::kMaxTileGenes);
  EXPECT_EQ(t & (t - 1), 0) << "a power of two";
  EXPECT_LE(Accumulator::BytesFor(500, t) + Accumulator::HistogramBytesFor(many, t),
            uint64_t{512} << 10);
  EXPECT_EQ(TiledRows::TileGenesFor(1 << 20, nullptr), 1) << "one gene at the least";
}

TEST(TiledRows, SaysWhenThePendingValuesOutgrowTheirRoom) {
  std::mt19937 rng(3);
  std::vector<int32_t> group_of_cell(2000, 0);
  const CellContext cells{&group_of_cell, Transform::kNone, nullptr, nullptr};
  const Matrix m = RandomMatrix(2000, 200, 500, &rng);
  SlabPool pool;
  TiledRows tiles(0, 200, 8, 2, 4096, nullptr, &pool);
  for (size_t i = 0; i < m.blocks.size(); ++i)
    ASSERT_FALSE(tiles.Partition(m.blocks[i], cells, static_cast<int>(i % 2)));
  EXPECT_TRUE(tiles.overflowed());
}

TEST(TiledRows, NamesTheBadValueAndTheDuplicate) {
  std::vector<int32_t> group_of_cell = {0, 1, 1};
  std::vector<int64_t> n_cells_of = {1, 2};
  const HistogramSpec spec{histogram::Layout(9.0), &n_cells_of};
  const CellContext cells{&group_of_cell, Transform::kLog1p, nullptr, nullptr};
  SparseBlock bad;
  bad.major_count = 3;
  bad.offsets = {0, 1, 2, 3};
  bad.minor = {4, 5, 6};
  bad.values = {1, -1, 2};  // log1p(-1) = -inf
  SlabPool pool;
  TiledRows a(0, 10, 4, 1, 1 << 16, &spec.layout, &pool);
  auto v = a.Partition(bad, cells, 0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->cell, 1);
  EXPECT_EQ(v->gene, 5);
  EXPECT_FALSE(v->duplicate);

  // Cell 0 (a group of one cell) lists gene 6 twice.
  SparseBlock dup;
  dup.major_count = 1;
  dup.offsets = {0, 2};
  dup.minor = {6, 6};
  dup.values = {1, 3};
  TiledRows b(0, 10, 4, 1, 1 << 16, &spec.layout, &pool);
  ASSERT_FALSE(b.Partition(dup, cells, 0));
  Accumulator acc(2, 0, 4, &spec);
  auto d = b.AccumulateTile(b.TileOf(6), cells, &acc);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->duplicate);
  EXPECT_EQ(d->cell, 0);
  EXPECT_EQ(d->gene, 6);
}

}  // namespace
}  // namespace cellcube::aggregate
