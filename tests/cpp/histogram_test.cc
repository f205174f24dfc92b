// The histogram layer's definitions: binning at the edges, quantiles, and records.
#include <gtest/gtest.h>

#include <random>

#include "histogram/histogram.h"
#include "histogram/record.h"

namespace cellcube::histogram {
namespace {

TEST(HistogramLayout, BinsAreHalfOpenBelowAndClosedAbove) {
  const Layout l;
  EXPECT_EQ(l.Edge(64), kDefaultMax);
  for (int i = 1; i < kBins; ++i) {
    const double e = l.Edge(i);
    EXPECT_EQ(l.BinOf(e), i - 1) << i;                     // e_i belongs to bin i - 1
    EXPECT_EQ(l.BinOf(std::nextafter(e, 100.0)), i) << i;  // just above it to bin i
  }
  EXPECT_EQ(l.BinOf(1e-300), 0);
  EXPECT_EQ(l.BinOf(kDefaultMax), 63);
  EXPECT_EQ(l.BinOf(kDefaultMax * 2), 63);
}

TEST(HistogramLayout, QuantileFollowsTheDefinition) {
  const Layout l(6.4);  // w = 0.1
  Counts b{};
  b[10] = 2;  // (1.0, 1.1]
  b[20] = 2;  // (2.0, 2.1]
  // 4 zeros + 4 cells: q = 0.5 -> r = 4 <= Z -> 0
  EXPECT_EQ(l.Quantile(b, 4, 0.5), 0);
  // q = 0.75 -> r = 6: C_9 = 4, bin 10 reaches 6 -> 1.0 + 0.1 * 2 / 2
  EXPECT_DOUBLE_EQ(l.Quantile(b, 4, 0.75), 1.1);
  // q = 0.625 -> r = 5 -> 1.0 + 0.1 * 1 / 2
  EXPECT_DOUBLE_EQ(l.Quantile(b, 4, 0.625), 1.05);
  // median among expressing cells: Z = 0, r = 2 -> top of bin 10
  EXPECT_DOUBLE_EQ(l.Quantile(b, 0, 0.5), 1.1);
  EXPECT_DOUBLE_EQ(l.Max(b), 2.1);
  EXPECT_TRUE(std::isnan(l.Quantile(Counts{}, 0, 0.5)));
  EXPECT_EQ(l.Max(Counts{}), 0);
}

Counts Decode(const std::vector<uint8_t>& rec, uint64_t nnz, size_t* len) {
  Counts out{};
  const char* why = nullptr;
  *len = ReadRecord(rec.data(), rec.size(), nnz, &out, &why);
  EXPECT_EQ(why, nullptr);
  return out;
}

TEST(HistogramRecord, RoundTripsAndPicksTheShorterForm) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    Counts b{};
    const int cells = static_cast<int>(rng() % 400);
    const int centre = static_cast<int>(rng() % 64), spread = 1 + static_cast<int>(rng() % 20);
    for (int c = 0; c < cells; ++c) {
      int bin = centre + static_cast<int>(rng() % (2 * spread + 1)) - spread;
      bin = std::clamp(bin, 0, 63);
      ++b[static_cast<size_t>(bin)];
    }
    if (trial % 50 == 0) b[63] += 300000;  // counts of several varint bytes
    const uint64_t nnz = Total(b);
    std::vector<uint8_t> rec;
    AppendRecord(b, nnz, &rec);
    ASSERT_EQ(rec.size(), RecordLength(b, nnz));
    EXPECT_LE(rec.size(), nnz);
    size_t len = 0;
    EXPECT_EQ(Decode(rec, nnz, &len), b);
    EXPECT_EQ(len, rec.size());
  }
}

TEST(HistogramRecord, CheckedDecodingAddsWhatReadRecordAdds) {
  std::mt19937 rng(13);
  for (int trial = 0; trial < 3000; ++trial) {
    Counts b{};
    const int cells = 1 + static_cast<int>(rng() % 300);
    const int centre = static_cast<int>(rng() % 64), spread = static_cast<int>(rng() % 25);
    for (int c = 0; c < cells; ++c)
      ++b[static_cast<size_t>(
          std::clamp(centre + static_cast<int>(rng() % (2 * spread + 1)) - spread, 0, 63))];
    if (trial % 7 == 0) b[static_cast<size_t>(rng() % 64)] += 1u << (7 * (rng() % 4));
    const uint64_t nnz = Total(b);
    std::vector<uint8_t> rec;
    AppendRecord(b, nnz, &rec);
    rec.push_back(0x11);  // the next record's first byte: not read
    Counts fast{}, checked{};
    const char* why = nullptr;
    const size_t n = ReadRecord(rec.data(), rec.size(), nnz, &checked, &why);
    ASSERT_EQ(why, nullptr);
    EXPECT_EQ(AddCheckedRecord(rec.data(), rec.size(), nnz, &fast), n);
    EXPECT_EQ(CheckedRecordLength(rec.data(), rec.size(), nnz), n);
    ASSERT_EQ(fast, checked);
  }
}

TEST(HistogramRecord, SortedBinsGiveTheSameBytes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 3000; ++trial) {
    const size_t n = 1 + rng() % 200;
    const int centre = static_cast<int>(rng() % 64), spread = 1 + static_cast<int>(rng() % 30);
    std::vector<uint8_t> sorted(n);
    Counts b{};
    for (auto& x : sorted) {
      x = static_cast<uint8_t>(
          std::clamp(centre + static_cast<int>(rng() % (2 * spread + 1)) - spread, 0, 63));
      ++b[x];
    }
    std::sort(sorted.begin(), sorted.end());
    std::vector<uint8_t> want, got;
    AppendRecord(b, n, &want);
    AppendSortedRecord(sorted.data(), n, &got);
    ASSERT_EQ(got, want) << n;
  }
}

TEST(HistogramRecord, ByteCountsGiveTheSameBytes) {
  std::mt19937 rng(12);
  for (int trial = 0; trial < 3000; ++trial) {
    // From a few cells (lists) to 255 in one bin (two-byte varints), spans anywhere.
    const int cells = 1 + static_cast<int>(rng() % 255);
    const int centre = static_cast<int>(rng() % 64), spread = static_cast<int>(rng() % 33);
    uint8_t counts[64] = {};
    Counts b{};
    for (int c = 0; c < cells; ++c) {
      const int bin =
          std::clamp(centre + static_cast<int>(rng() % (2 * spread + 1)) - spread, 0, 63);
      ++counts[bin];
      ++b[static_cast<size_t>(bin)];
    }
    std::vector<uint8_t> want, got;
    AppendRecord(b, static_cast<uint64_t>(cells), &want);
    AppendByteCountsRecord(counts, static_cast<uint64_t>(cells), &got);
    ASSERT_EQ(got, want) << cells << " cells around " << centre;
  }
}

TEST(HistogramRecord, DamageIsRefusedAndAddsNothing) {
  Counts b{};
  b[3] = 1;
  b[5] = 2;
  std::vector<uint8_t> list;
  AppendRecord(b, 3, &list);
  ASSERT_EQ(list, (std::vector<uint8_t>{3, 5, 5}));
  const char* why = nullptr;
  Counts out{};
  EXPECT_EQ(ReadRecord(list.data(), 2, 3, &out, &why), 0u);  // cut short
  EXPECT_NE(why, nullptr);
  std::vector<uint8_t> unordered{5, 3, 5};
  why = nullptr;
  EXPECT_EQ(ReadRecord(unordered.data(), 3, 3, &out, &why), 0u);
  EXPECT_NE(why, nullptr);
  Counts wide{};
  wide[10] = 100;
  wide[12] = 100;
  std::vector<uint8_t> range;
  AppendRecord(wide, 200, &range);
  ASSERT_EQ(range, (std::vector<uint8_t>{0x40 | 10, 12, 100, 0, 100}));
  why = nullptr;
  EXPECT_EQ(ReadRecord(range.data(), range.size(), 201, &out, &why), 0u);  // sum != nnz
  EXPECT_NE(why, nullptr);
  std::vector<uint8_t> unknown{0x80, 1};
  why = nullptr;
  EXPECT_EQ(ReadRecord(unknown.data(), 2, 1, &out, &why), 0u);
  EXPECT_NE(why, nullptr);
  EXPECT_EQ(out, Counts{});
}

}  // namespace
}  // namespace cellcube::histogram
