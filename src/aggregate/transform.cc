#include "aggregate/transform.h"

namespace cellcube::aggregate {

const char* TransformName(Transform t) {
  switch (t) {
    case Transform::kNone:
      return "none";
    case Transform::kLog1p:
      return "log1p";
    case Transform::kCp10kLog1p:
      return "cp10k_log1p";
  }
  return "?";
}

Result<Transform> ParseTransform(const std::string& name) {
  if (name == "none") return Transform::kNone;
  if (name == "log1p") return Transform::kLog1p;
  if (name == "cp10k_log1p") return Transform::kCp10kLog1p;
  return Status::Usage("unknown transform '" + name +
                       "' (choose auto, none, log1p or cp10k_log1p)");
}

Transform ChooseTransform(const std::vector<double>& first_values) {
  for (double v : first_values)
    if (!(v >= 0) || v != std::floor(v)) return Transform::kNone;
  return Transform::kCp10kLog1p;
}

}  // namespace cellcube::aggregate
