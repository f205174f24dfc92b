// The value transforms of docs/QUERY.md, applied to each cell's values before aggregation.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::aggregate {

enum class Transform { kNone, kLog1p, kCp10kLog1p };

const char* TransformName(Transform t);
// "none" | "log1p" | "cp10k_log1p" ("auto" is resolved with ChooseTransform).
Result<Transform> ParseTransform(const std::string& name);

// auto: cp10k_log1p when every sampled value is a non-negative integer (raw counts),
// else none.
Transform ChooseTransform(const std::vector<double>& first_values);

// Per-cell factor for cp10k_log1p: 1e4 / total, or 0 when the total is 0 (the cell's
// values then all become 0).
inline double Cp10kScale(double row_total) { return row_total == 0 ? 0.0 : 1e4 / row_total; }

// Transforms one value; `scale` is the cell's Cp10kScale (ignored otherwise).
inline double ApplyTransform(Transform t, double v, double scale) {
  switch (t) {
    case Transform::kNone:
      return v;
    case Transform::kLog1p:
      return std::log1p(v);
    case Transform::kCp10kLog1p:
      return std::log1p(v * scale);
  }
  return v;
}

}  // namespace cellcube::aggregate
