// CSV and JSON renderings of a QueryResult (include/cellcube/query.h), shared by the
// CLI, the server and the Python module.
#include <charconv>
#include <cmath>

#include "cellcube/query.h"

namespace cellcube {
namespace {

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, end);
}

// The shortest text that reads back as the same double ("0.5", "1e-05").
void AppendDouble(std::string* out, double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, end);
}

void AppendCsvField(std::string* out, const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) {
    out->append(s);
    return;
  }
  out->push_back('"');
  for (char c : s) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

void AppendJsonString(std::string* out, const std::string& s) {
  static const char* kHex = "0123456789abcdef";
  out->push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 15]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

// Appends metric `m` of `a`; false (nothing appended) when the value is missing.
bool AppendMetric(std::string* out, Metric m, const Aggregate& a) {
  if (m == Metric::kNCells || m == Metric::kNnz) {
    if (a.n_cells <= 0) return false;
    AppendInt(out, m == Metric::kNCells ? a.n_cells : a.nnz);
    return true;
  }
  const double v = MetricValue(m, a);
  if (!std::isfinite(v)) return false;
  AppendDouble(out, v);
  return true;
}

}  // namespace

std::string FormatCsv(const QueryResult& r) {
  std::string out;
  out.reserve(64 + r.rows.size() * (24 + 12 * r.metrics.size() + 12 * r.by.size()));
  const auto names = r.ColumnNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out.push_back(',');
    AppendCsvField(&out, names[i]);
  }
  out.push_back('\n');
  for (const auto& row : r.rows) {
    for (size_t c = 0; c < r.by.size(); ++c) {
      AppendCsvField(&out, r.Label(row, c));
      out.push_back(',');
    }
    AppendCsvField(&out, r.genes[static_cast<size_t>(row.gene)]);
    for (Metric m : r.metrics) {
      out.push_back(',');
      AppendMetric(&out, m, row.stats);
    }
    out.push_back('\n');
  }
  return out;
}

std::string FormatJson(const QueryResult& r) {
  std::string out;
  out.reserve(2 + r.rows.size() * (32 + 24 * r.metrics.size() + 24 * r.by.size()));
  out.push_back('[');
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out.append(i ? ",\n{" : "\n{");
    for (size_t c = 0; c < r.by.size(); ++c) {
      AppendJsonString(&out, r.by[c]);
      out.push_back(':');
      AppendJsonString(&out, r.Label(row, c));
      out.push_back(',');
    }
    out.append("\"gene\":");
    AppendJsonString(&out, r.genes[static_cast<size_t>(row.gene)]);
    for (Metric m : r.metrics) {
      out.append(",\"");
      out.append(MetricName(m));
      out.append("\":");
      if (!AppendMetric(&out, m, row.stats)) out.append("null");
    }
    out.push_back('}');
  }
  out.append(r.rows.empty() ? "]\n" : "\n]\n");
  return out;
}

}  // namespace cellcube
