// The metric catalogue of query answers (docs/QUERY.md): names, the defaults, and each
// metric's value from a row's pooled statistics.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cellcube/query.h"
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
  }
  return "?";
}

const std::vector<Metric>& AllMetrics() {
  static const std::vector<Metric> kAll = {Metric::kNCells, Metric::kNnz,  Metric::kFrac,
                                           Metric::kSum,    Metric::kMean, Metric::kMeanExpr,
                                           Metric::kVar,    Metric::kStd};
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

double MetricValue(Metric m, const Aggregate& a) {
  constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
  if (a.n_cells <= 0) return kMissing;
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
  }
  return kMissing;
}

std::vector<std::string> QueryResult::ColumnNames() const {
  std::vector<std::string> out = by;
  out.push_back("gene");
  for (Metric m : metrics) out.push_back(MetricName(m));
  return out;
}

}  // namespace cellcube
