#include "histogram/histogram.h"

#include <limits>

namespace cellcube::histogram {

uint64_t Total(const Counts& bins) {
  uint64_t n = 0;
  for (uint64_t c : bins) n += c;
  return n;
}

double Layout::Quantile(const Counts& bins, uint64_t zeros, double q) const {
  const uint64_t n = zeros + Total(bins);
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const double r = q * static_cast<double>(n);
  if (r <= static_cast<double>(zeros)) return 0;
  uint64_t below = zeros;  // C_(i-1)
  for (int i = 0; i < kBins; ++i) {
    const uint64_t c = bins[static_cast<size_t>(i)];
    if (c != 0 && static_cast<double>(below + c) >= r)
      return Edge(i) + width_ * (r - static_cast<double>(below)) / static_cast<double>(c);
    below += c;
  }
  return Max(bins);  // q > 1 (never asked): the top
}

double Layout::Max(const Counts& bins) const {
  for (int i = kBins - 1; i >= 0; --i)
    if (bins[static_cast<size_t>(i)] != 0) return Edge(i + 1);
  return 0;
}

}  // namespace cellcube::histogram
