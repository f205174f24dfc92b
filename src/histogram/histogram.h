// The distribution of a (group, gene) entry's values (docs/FORMAT.md "Histograms",
// docs/QUERY.md "Distribution metrics"): the cells with a value above 0 counted in 64
// equal bins over (0, H]; the other cells are zeros. Histograms add bin by bin, so a
// roll-up's distribution is exact to the bins. This module is the one definition of the
// layout, the binning and the quantiles; record.h is the one encoding of an entry's bins.
//
// Thread safety: pure functions and values.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace cellcube::histogram {

inline constexpr int kBins = 64;

// ln(10001): the largest possible cp10k_log1p value, the default upper edge.
inline constexpr double kDefaultMax = 9.210440366976517;

using Counts = std::array<uint64_t, kBins>;

// 64 bins over (0, max]: bin i holds the values v with edge(i) < v <= edge(i + 1), where
// edge(i) = i * (max / 64) as a double and edge(64) = max; values above max are in bin 63.
class Layout {
 public:
  Layout() = default;
  explicit Layout(double max) : max_(max), width_(max / kBins) {}

  // Whether `max` makes a layout: finite and above 0 (and wide enough that the 64 bins
  // have distinct edges).
  static bool Valid(double max) { return std::isfinite(max) && max > 1e-300; }

  double max() const { return max_; }
  double width() const { return width_; }
  double Edge(int i) const { return i >= kBins ? max_ : static_cast<double>(i) * width_; }

  // The bin of a value v > 0: ceil(v / w) - 1, corrected against the edges (the division
  // may round across one).
  int BinOf(double v) const {
    if (!(v <= max_)) return kBins - 1;  // above H (NaN never reaches here)
    int bin = static_cast<int>(std::ceil(v / width_)) - 1;
    if (bin < 0) bin = 0;
    if (bin > kBins - 1) bin = kBins - 1;
    while (bin > 0 && v <= Edge(bin)) --bin;
    while (bin < kBins - 1 && v > Edge(bin + 1)) ++bin;
    return bin;
  }

  // The quantile q of `zeros` cells at 0 and the binned cells (docs/QUERY.md): with
  // N = zeros + binned cells, r = q * N, the answer is 0 when r <= zeros; otherwise, in
  // the first bin i where the cumulative count reaches r, edge(i) plus w times the share
  // of that bin's cells needed to reach r. The smallest x where the CDF (zeros a point
  // mass, each bin's cells spread evenly over it) reaches q. NaN when N = 0.
  double Quantile(const Counts& bins, uint64_t zeros, double q) const;

  // The upper edge of the highest non-empty bin (0 when every bin is empty).
  double Max(const Counts& bins) const;

 private:
  double max_ = kDefaultMax;
  double width_ = kDefaultMax / kBins;
};

// The sum of the counts.
uint64_t Total(const Counts& bins);

}  // namespace cellcube::histogram
