// The metric catalogue of query answers (docs/QUERY.md): names, the defaults, and each
// metric's value from a row's pooled statistics.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "histogram/histogram.h"
#include "util/text.h"

namespace cellcube {

const char* MetricName(Metric m) {
  switch (m) {
    case Metric::kNCells:
      return "n_cells";
    case Metric::kNnz:
      return "nnz";
    case Metric::kFrac:
      return "frac";
    case Metric::kSum:
      return "sum";
    case Metric::kMean:
      return "mean";
    case Metric::kMeanExpr:
      return "mean_expr";
    case Metric::kVar:
      return "var";
    case Metric::kStd:
      return "std";
    case Metric::kMedian:
      return "median";
    case Metric::kQ05:
      return "q05";
    case Metric::kQ25:
      return "q25";
    case Metric::kQ75:
      return "q75";
    case Metric::kQ95:
      return "q95";
    case Metric::kMedianExpr:
      return "median_expr";
    case Metric::kMax:
      return "max";
  }
  return "?";
}

const std::vector<Metric>& AllMetrics() {
  static const std::vector<Metric> kAll = {
      Metric::kNCells,   Metric::kNnz, Metric::kFrac, Metric::kSum,        Metric::kMean,
      Metric::kMeanExpr, Metric::kVar, Metric::kStd,  Metric::kMedian,     Metric::kQ05,
      Metric::kQ25,      Metric::kQ75, Metric::kQ95,  Metric::kMedianExpr, Metric::kMax};
  return kAll;
}

const std::vector<Metric>& DefaultMetrics() {
  static const std::vector<Metric> kDefault = {Metric::kNCells, Metric::kFrac, Metric::kMean};
  return kDefault;
}

Result<std::vector<Metric>> ParseMetrics(const std::vector<std::string>& names) {
  if (names.empty()) return DefaultMetrics();
  std::vector<std::string> known;
  for (Metric m : AllMetrics()) known.push_back(MetricName(m));
  std::vector<Metric> out;
  for (const auto& name : names) {
    auto it = std::find(known.begin(), known.end(), name);
    if (it == known.end())
      return Status::InvalidArgument("unknown metric '" + name + "'" +
                                     SuggestionSuffix(name, known));
    Metric m = AllMetrics()[static_cast<size_t>(it - known.begin())];
    if (std::find(out.begin(), out.end(), m) != out.end())
      return Status::InvalidArgument("metric '" + name + "' asked for twice");
    out.push_back(m);
  }
  return out;
}

namespace {

// The distribution metrics, from the row's histogram (histogram/histogram.h): its zeros
// are the cells without a value above 0.
double DistributionValue(Metric m, const Aggregate& a, const Bins& bins, double hist_max) {
  const histogram::Layout layout(hist_max);
  const auto zeros = static_cast<uint64_t>(a.n_cells - a.nnz);
  switch (m) {
    case Metric::kMedian:
      return layout.Quantile(bins, zeros, 0.5);
    case Metric::kQ05:
      return layout.Quantile(bins, zeros, 0.05);
    case Metric::kQ25:
      return layout.Quantile(bins, zeros, 0.25);
    case Metric::kQ75:
      return layout.Quantile(bins, zeros, 0.75);
    case Metric::kQ95:
      return layout.Quantile(bins, zeros, 0.95);
    case Metric::kMedianExpr:
      return layout.Quantile(bins, 0, 0.5);  // NaN when no cell expresses
    default:
      return layout.Max(bins);
  }
}

}  // namespace

double MetricValue(Metric m, const Aggregate& a, const Bins* bins, double hist_max) {
  constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
  if (a.n_cells <= 0) return kMissing;
  if (MetricNeedsHistograms(m))
    return bins && hist_max > 0 ? DistributionValue(m, a, *bins, hist_max) : kMissing;
  const auto n = static_cast<double>(a.n_cells);
  switch (m) {
    case Metric::kNCells:
      return n;
    case Metric::kNnz:
      return static_cast<double>(a.nnz);
    case Metric::kFrac:
      return static_cast<double>(a.nnz) / n;
    case Metric::kSum:
      return a.sum;
    case Metric::kMean:
      return a.sum / n;
    case Metric::kMeanExpr:
      return a.nnz > 0 ? a.sum / static_cast<double>(a.nnz) : kMissing;
    case Metric::kVar:
    case Metric::kStd: {
      if (a.n_cells < 2) return kMissing;
      const double var = a.m2 / (n - 1);
      return m == Metric::kVar ? var : std::sqrt(var);
    }
    default:
      return kMissing;
  }
}

std::vector<std::string> QueryResult::ColumnNames() const {
  std::vector<std::string> out;
  for (size_t c = 0; c < by.size(); ++c) {
    out.push_back(by[c]);
    if (c < by_rolled.size() && by_rolled[c]) out.push_back(DepthColumn(c));
  }
  out.push_back("gene");
  for (Metric m : metrics) out.push_back(MetricName(m));
  return out;
}

}  // namespace cellcube
