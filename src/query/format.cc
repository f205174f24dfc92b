// CSV and JSON renderings of a QueryResult (include/cellcube/query.h), shared by the
// CLI, the server and the Python module.
#include <charconv>
#include <cmath>

#include "cellcube/query.h"
#include "query/text_out.h"

namespace cellcube {

namespace text_out {
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
  bool plain = true;
  for (char c : s) plain &= c != ',' && c != '"' && c != '\r' && c != '\n';
  if (plain) {
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

}  // namespace text_out

namespace {

using namespace text_out;

// Appends metric `m` of `row`; false (nothing appended) when the value is missing.
bool AppendMetric(std::string* out, Metric m, const QueryResult::Row& row) {
  const Aggregate& a = row.stats;
  if (m == Metric::kNCells || m == Metric::kNnz) {
    if (a.n_cells <= 0) return false;
    AppendInt(out, m == Metric::kNCells ? a.n_cells : a.nnz);
    return true;
  }
  const double v = row.Value(m);
  if (!std::isfinite(v)) return false;
  AppendDouble(out, v);
  return true;
}

}  // namespace

// Each split's labels and each gene are rendered once, then reused for every row.
std::string FormatCsv(const QueryResult& r) {
  std::vector<std::string> split_prefix(static_cast<size_t>(r.n_splits));
  for (size_t sp = 0; sp < split_prefix.size(); ++sp)
    for (size_t c = 0; c < r.by.size(); ++c) {
      AppendCsvField(&split_prefix[sp], r.split_labels[sp * r.by.size() + c]);
      split_prefix[sp].push_back(',');
    }
  std::vector<std::string> gene_field(r.genes.size());
  for (size_t g = 0; g < r.genes.size(); ++g) AppendCsvField(&gene_field[g], r.genes[g]);

  std::string out;
  out.reserve(64 + r.rows.size() * (32 + 20 * r.metrics.size() + 16 * r.by.size()));
  const auto names = r.ColumnNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out.push_back(',');
    AppendCsvField(&out, names[i]);
  }
  out.push_back('\n');
  for (const auto& row : r.rows) {
    out.append(split_prefix[static_cast<size_t>(row.split)]);
    out.append(gene_field[static_cast<size_t>(row.gene)]);
    for (Metric m : r.metrics) {
      out.push_back(',');
      AppendMetric(&out, m, row);
    }
    out.push_back('\n');
  }
  return out;
}

std::string FormatJson(const QueryResult& r) {
  std::vector<std::string> split_prefix(static_cast<size_t>(r.n_splits));
  for (size_t sp = 0; sp < split_prefix.size(); ++sp)
    for (size_t c = 0; c < r.by.size(); ++c) {
      AppendJsonString(&split_prefix[sp], r.by[c]);
      split_prefix[sp].push_back(':');
      AppendJsonString(&split_prefix[sp], r.split_labels[sp * r.by.size() + c]);
      split_prefix[sp].push_back(',');
    }
  std::vector<std::string> gene_field(r.genes.size());
  for (size_t g = 0; g < r.genes.size(); ++g) {
    gene_field[g] = "\"gene\":";
    AppendJsonString(&gene_field[g], r.genes[g]);
  }
  std::vector<std::string> metric_key;
  for (Metric m : r.metrics) metric_key.push_back(std::string(",\"") + MetricName(m) + "\":");

  std::string out;
  out.reserve(4 + r.rows.size() * (32 + 24 * r.metrics.size() + 24 * r.by.size()));
  out.push_back('[');
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out.append(i ? ",\n{" : "\n{");
    out.append(split_prefix[static_cast<size_t>(row.split)]);
    out.append(gene_field[static_cast<size_t>(row.gene)]);
    for (size_t k = 0; k < r.metrics.size(); ++k) {
      out.append(metric_key[k]);
      if (!AppendMetric(&out, r.metrics[k], row)) out.append("null");
    }
    out.push_back('}');
  }
  out.append(r.rows.empty() ? "]\n" : "\n]\n");
  return out;
}

}  // namespace cellcube
