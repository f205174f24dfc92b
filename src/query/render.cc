// The renderings of answers (include/cellcube/render.h): queries' rows in CSV, JSON and
// the compact layout, DE and markers tables in CSV and JSON. A query's rows are many and
// their text is most of its cost, so what repeats in them (a split's labels, a gene, a
// metric's key) is rendered once and appended to each row.
#include "cellcube/render.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "histogram/histogram.h"
#include "util/text.h"

namespace cellcube {
namespace {

// ---- numbers and strings ----

// The most any Put* below writes: a double's shortest text is at most 24 characters.
constexpr size_t kNumberMax = 32;

// Put* write a number at p (with room for kNumberMax) and return the end: a query row's
// numbers go into one buffer and reach the answer in one append (RowBuffer).
char* PutInt(char* p, int64_t v) { return std::to_chars(p, p + kNumberMax, v).ptr; }

// The shortest text that reads back as the same double ("0.5", "1e-05").
char* PutDouble(char* p, double v) { return std::to_chars(p, p + kNumberMax, v).ptr; }

// The same for float32: half the bytes of float64's digits, and within docs/QUERY.md's
// tolerances (relative rounding 6e-8).
char* PutFloat32(char* p, float v) { return std::to_chars(p, p + kNumberMax, v).ptr; }

char* PutText(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

void AppendInt(std::string* out, int64_t v) {
  char buf[kNumberMax];
  out->append(buf, PutInt(buf, v));
}

void AppendDouble(std::string* out, double v) {
  char buf[kNumberMax];
  out->append(buf, PutDouble(buf, v));
}

// One buffer per answer for the rows' numbers and keys, sized for the longest row once:
// rendering allocates nothing per row.
class RowBuffer {
 public:
  // `per_metric`: the most text beside a metric's number (its key).
  RowBuffer(size_t n_metrics, size_t per_metric)
      : buf_(8 + 2 * kNumberMax + n_metrics * (per_metric + kNumberMax), '\0') {}
  char* begin() { return buf_.data(); }
  void AppendTo(std::string* out, const char* end) {
    out->append(buf_.data(), static_cast<size_t>(end - buf_.data()));
  }

 private:
  std::string buf_;
};

// RFC 4180: quoted when it holds ',', '"', CR or LF.
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

void AppendCsvHeader(std::string* out, const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out->push_back(',');
    AppendCsvField(out, names[i]);
  }
  out->push_back('\n');
}

// ["a","b"]
void AppendJsonStrings(std::string* out, const std::vector<std::string>& items) {
  out->push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out->push_back(',');
    AppendJsonString(out, items[i]);
  }
  out->push_back(']');
}

// ---- query rows ----

// Writes metric `m` of row `i` as float64 text, or `missing` when it has none.
char* PutMetric(char* p, Metric m, const QueryResult& r, size_t i, std::string_view missing) {
  const double v = r.Value(i, m);
  if (!std::isfinite(v)) return PutText(p, missing);
  return MetricIsInteger(m) ? PutInt(p, static_cast<int64_t>(v)) : PutDouble(p, v);
}

// The compact layout's form: null when missing (or not finite, as the objects layout),
// float32 digits for the floats, float64's for a value beyond float32's range (JSON has
// no infinity).
char* PutCompactMetric(char* p, Metric m, const QueryResult& r, size_t i) {
  const double v = r.Value(i, m);
  if (!std::isfinite(v)) return PutText(p, "null");
  if (MetricIsInteger(m)) return PutInt(p, static_cast<int64_t>(v));
  const auto narrow = static_cast<float>(v);
  return std::isinf(narrow) ? PutDouble(p, v) : PutFloat32(p, narrow);
}

// Per split, the text each of its rows starts with: its labels, each rendered by
// `field(out, by column, label)` and followed by a comma; a rolled-up column's label is
// followed by its depth, rendered by `depth(out, by column, depth)` (docs/ONTOLOGY.md).
template <typename Field, typename Depth>
std::vector<std::string> SplitPrefixes(const QueryResult& r, Field field, Depth depth) {
  std::vector<std::string> prefix(static_cast<size_t>(r.n_splits));
  for (size_t sp = 0; sp < prefix.size(); ++sp)
    for (size_t c = 0; c < r.by.size(); ++c) {
      field(&prefix[sp], c, sp);
      prefix[sp].push_back(',');
      if (c < r.by_rolled.size() && r.by_rolled[c]) {
        depth(&prefix[sp], c, r.Depth(static_cast<int64_t>(sp), c));
        prefix[sp].push_back(',');
      }
    }
  return prefix;
}

std::vector<std::string> CsvSplitPrefixes(const QueryResult& r) {
  return SplitPrefixes(
      r,
      [&](std::string* s, size_t c, size_t sp) {
        AppendCsvField(s, r.split_labels[sp * r.by.size() + c]);
      },
      [](std::string* s, size_t, int32_t depth) { AppendInt(s, depth); });
}

// JSON objects' keys: each by-column's label, then for a backed column its term id
// (COL_ontology_term_id, null for a plain value), then for a rolled-up one its depth.
std::vector<std::string> JsonSplitPrefixes(const QueryResult& r) {
  return SplitPrefixes(
      r,
      [&](std::string* s, size_t c, size_t sp) {
        AppendJsonString(s, r.by[c]);
        s->push_back(':');
        AppendJsonString(s, r.split_labels[sp * r.by.size() + c]);
        if (c >= r.by_backed.size() || !r.by_backed[c]) return;
        s->push_back(',');
        AppendJsonString(s, r.by[c] + "_ontology_term_id");
        s->push_back(':');
        const std::string& id = r.split_terms[sp * r.by.size() + c];
        if (id.empty())
          s->append("null");
        else
          AppendJsonString(s, id);
      },
      [&](std::string* s, size_t c, int32_t depth) {
        AppendJsonString(s, r.DepthColumn(c));
        s->push_back(':');
        AppendInt(s, depth);
      });
}

void AppendCsvRows(const QueryResult& r, std::string* out) {
  const auto split_prefix = CsvSplitPrefixes(r);
  std::vector<std::string> gene_field(r.genes.size());
  for (size_t g = 0; g < r.genes.size(); ++g) AppendCsvField(&gene_field[g], r.genes[g]);
  RowBuffer numbers(r.metrics.size(), 1);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out->append(split_prefix[static_cast<size_t>(row.split)]);
    out->append(gene_field[static_cast<size_t>(row.gene)]);
    char* p = numbers.begin();
    for (Metric m : r.metrics) {
      *p++ = ',';
      p = PutMetric(p, m, r, i, "");
    }
    *p++ = '\n';
    numbers.AppendTo(out, p);
  }
}

// FormatJson's array: one object per row, one per line.
void AppendJsonObjects(const QueryResult& r, std::string* out) {
  const auto split_prefix = JsonSplitPrefixes(r);
  std::vector<std::string> gene_field(r.genes.size());
  for (size_t g = 0; g < r.genes.size(); ++g) {
    gene_field[g] = "\"gene\":";
    AppendJsonString(&gene_field[g], r.genes[g]);
  }
  std::vector<std::string> metric_key;
  size_t longest_key = 0;
  for (Metric m : r.metrics) {
    metric_key.push_back(std::string(",\"") + MetricName(m) + "\":");
    longest_key = std::max(longest_key, metric_key.back().size());
  }
  RowBuffer numbers(r.metrics.size(), longest_key);
  out->push_back('[');
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out->append(i ? ",\n{" : "\n{");
    out->append(split_prefix[static_cast<size_t>(row.split)]);
    out->append(gene_field[static_cast<size_t>(row.gene)]);
    char* p = numbers.begin();
    for (size_t k = 0; k < r.metrics.size(); ++k) {
      p = PutText(p, metric_key[k]);
      p = PutMetric(p, r.metrics[k], r, i, "null");
    }
    *p++ = '}';
    numbers.AppendTo(out, p);
  }
  out->append(r.rows.empty() ? "]\n" : "\n]\n");
}

// Beside the compact layout's splits, when a by-column is ontology-backed:
// "split_terms":[[id or null, ...]...], and when one is rolled up "split_depth":[[depth
// per rolled-up column]...] (docs/ONTOLOGY.md).
void AppendCompactTerms(const QueryResult& r, std::string* out) {
  bool backed = false;
  for (uint8_t b : r.by_backed) backed = backed || b;
  if (backed) {
    out->append(",\"split_terms\":[");
    for (int64_t sp = 0; sp < r.n_splits; ++sp) {
      out->append(sp ? ",[" : "[");
      for (size_t c = 0; c < r.by.size(); ++c) {
        if (c) out->push_back(',');
        const std::string& id = r.split_terms.empty()
                                    ? std::string()
                                    : r.split_terms[static_cast<size_t>(sp) * r.by.size() + c];
        if (id.empty())
          out->append("null");
        else
          AppendJsonString(out, id);
      }
      out->push_back(']');
    }
    out->push_back(']');
  }
  if (r.n_rolled() == 0) return;
  out->append(",\"split_depth\":[");
  for (int64_t sp = 0; sp < r.n_splits; ++sp) {
    out->append(sp ? ",[" : "[");
    bool first = true;
    for (size_t c = 0; c < r.by.size(); ++c) {
      if (!r.by_rolled[c]) continue;
      if (!first) out->push_back(',');
      first = false;
      AppendInt(out, r.Depth(sp, c));
    }
    out->push_back(']');
  }
  out->push_back(']');
}

// "splits":[[labels]...],"rows":[[split,gene,metrics...]...]
void AppendCompactRows(const QueryResult& r, std::string* out) {
  out->append("\"splits\":[");
  for (int64_t sp = 0; sp < r.n_splits; ++sp) {
    out->append(sp ? ",[" : "[");
    for (size_t c = 0; c < r.by.size(); ++c) {
      if (c) out->push_back(',');
      AppendJsonString(out, r.split_labels[static_cast<size_t>(sp) * r.by.size() + c]);
    }
    out->push_back(']');
  }
  out->push_back(']');
  AppendCompactTerms(r, out);
  out->append(",\"rows\":[");
  RowBuffer numbers(r.metrics.size(), 1);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    char* p = numbers.begin();
    p = PutText(p, i ? ",[" : "[");
    p = PutInt(p, row.split);
    *p++ = ',';
    p = PutInt(p, row.gene);
    for (Metric m : r.metrics) {
      *p++ = ',';
      p = PutCompactMetric(p, m, r, i);
    }
    *p++ = ']';
    numbers.AppendTo(out, p);
  }
  out->push_back(']');
}

// ---- DE and markers ----

// The row's fields as text, empty for an empty value; `json` writes null instead, each
// field after its key from `json_keys` (the column's name as a JSON string, and ':').
void AppendDeRow(std::string* out, const DeResult& r, size_t i, bool json,
                 const std::vector<std::string>& json_keys, const std::string* lead = nullptr,
                 const std::string* lead_id_key = nullptr, const std::string* lead_id = nullptr) {
  const DeRow& row = r.rows[i];
  size_t column = 0;
  auto key = [&] {
    if (column) out->push_back(',');
    if (json) out->append(json_keys[column]);
    ++column;
  };
  auto text = [&](const std::string& v) {
    key();
    if (json)
      AppendJsonString(out, v);
    else
      AppendCsvField(out, v);
  };
  auto integer = [&](int64_t v) {
    key();
    if (v >= 0)
      AppendInt(out, v);
    else if (json)
      out->append("null");
  };
  auto number = [&](double v) {
    key();
    if (std::isfinite(v))
      AppendDouble(out, v);
    else if (json)
      out->append("null");
  };
  if (lead) text(*lead);
  if (lead_id_key) {  // JSON only: the lead value's term id beside it
    out->append(*lead_id_key);
    if (lead_id->empty())
      out->append("null");
    else
      AppendJsonString(out, *lead_id);
  }
  text(r.gene_ids[i]);
  text(r.symbols[i]);
  integer(row.n_cells1);
  integer(row.n_cells2);
  integer(row.n_donors1);
  integer(row.n_donors2);
  for (double v : {row.mean1, row.mean2, row.frac1, row.frac2, row.logfc, row.effect, row.t, row.df,
                   row.pvalue, row.padj})
    number(v);
}

// `lead`, when given, is per row the first column's value (markers: the value of the
// column the row is a marker of).
std::string DeCsv(const DeResult& r, const std::vector<std::string>& names,
                  const std::vector<std::string>* lead) {
  std::string out;
  AppendCsvHeader(&out, names);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    AppendDeRow(&out, r, i, false, {}, lead ? &(*lead)[i] : nullptr);
    out.push_back('\n');
  }
  return out;
}

// `lead_ids`, when given (markers of an ontology-backed column), is per row the lead
// value's term id, written after it as COL_ontology_term_id (null for a plain value).
std::string DeJson(const DeResult& r, const std::vector<std::string>& names,
                   const std::vector<std::string>* lead, int64_t took_us,
                   const std::vector<std::string>* lead_ids = nullptr) {
  std::string out = "{\"columns\":";
  AppendJsonStrings(&out, names);
  // Keys escaped once: a markers column's name may hold '"' or '\\'.
  std::vector<std::string> keys(names.size());
  for (size_t c = 0; c < names.size(); ++c) {
    AppendJsonString(&keys[c], names[c]);
    keys[c].push_back(':');
  }
  const bool ids = lead && lead_ids && !lead_ids->empty();
  std::string id_key;  // ,"COL_ontology_term_id": after the lead value
  if (ids) {
    id_key = ",";
    AppendJsonString(&id_key, names[0] + "_ontology_term_id");
    id_key.push_back(':');
  }
  out.append(",\n\"rows\":[");
  for (size_t i = 0; i < r.rows.size(); ++i) {
    out.append(i ? ",\n{" : "\n{");
    AppendDeRow(&out, r, i, true, keys, lead ? &(*lead)[i] : nullptr, ids ? &id_key : nullptr,
                ids ? &(*lead_ids)[i] : nullptr);
    out.push_back('}');
  }
  out.append("],\n\"test\":");
  AppendJsonString(&out, r.test);
  out.append(",\"notes\":");
  AppendJsonStrings(&out, r.notes);
  out.append(",\"took_us\":");
  AppendInt(&out, took_us);
  out.append("}\n");
  return out;
}

std::vector<std::string> MarkerColumns(const std::string& column) {
  std::vector<std::string> names = {column};
  names.insert(names.end(), DeColumnNames().begin(), DeColumnNames().end());
  return names;
}

}  // namespace

std::string FormatCsv(const QueryResult& r) {
  std::string out;
  out.reserve(64 + r.rows.size() * (32 + 20 * r.metrics.size() + 16 * r.by.size()));
  AppendCsvHeader(&out, r.ColumnNames());
  AppendCsvRows(r, &out);
  return out;
}

std::string FormatJson(const QueryResult& r) {
  std::string out;
  out.reserve(4 + r.rows.size() * (32 + 24 * r.metrics.size() + 24 * r.by.size()));
  AppendJsonObjects(r, &out);
  return out;
}

void AppendJsonRows(const QueryResult& r, RowLayout layout, std::string* out) {
  if (layout == RowLayout::kCompact) {
    AppendCompactRows(r, out);
  } else {
    out->append("\"rows\":");
    AppendJsonObjects(r, out);
  }
}

std::string FormatDeCsv(const DeResult& r) { return DeCsv(r, DeColumnNames(), nullptr); }
std::string FormatDeJson(const DeResult& r, int64_t took_us) {
  return DeJson(r, DeColumnNames(), nullptr, took_us);
}
std::string FormatMarkersCsv(const MarkersResult& r) {
  return DeCsv(r.de, MarkerColumns(r.column), &r.values);
}
std::string FormatMarkersJson(const MarkersResult& r, int64_t took_us) {
  return DeJson(r.de, MarkerColumns(r.column), &r.values, took_us, &r.term_ids);
}

// ---- distributions ----

std::vector<std::string> DistributionColumns(const QueryResult& r) {
  std::vector<std::string> names = r.ColumnNames();
  names.resize(names.size() - r.metrics.size() - 1);  // the by-columns (and depths)
  for (const char* c : {"gene", "n_cells", "zeros"}) names.emplace_back(c);
  return names;
}

std::string FormatDistributionCsv(const QueryResult& r) {
  std::vector<std::string> names = DistributionColumns(r);
  for (int b = 0; b < 64; ++b) names.push_back((b < 10 ? "bin_0" : "bin_") + std::to_string(b));
  std::string out;
  out.reserve(64 * 8 + r.rows.size() * (64 * 3 + 32 * (r.by.size() + 2)));
  AppendCsvHeader(&out, names);
  const auto split_prefix = CsvSplitPrefixes(r);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out.append(split_prefix[static_cast<size_t>(row.split)]);
    AppendCsvField(&out, r.genes[static_cast<size_t>(row.gene)]);
    out.push_back(',');
    AppendInt(&out, row.stats.n_cells);
    out.push_back(',');
    const bool known = r.HasDistribution(i);
    if (known) AppendInt(&out, row.stats.n_cells - row.stats.nnz);
    for (int b = 0; b < 64; ++b) {
      out.push_back(',');
      if (known) AppendInt(&out, static_cast<int64_t>(r.bins[i][static_cast<size_t>(b)]));
    }
    out.push_back('\n');
  }
  return out;
}

void AppendDistributionJson(const QueryResult& r, std::string* out) {
  out->append("\"columns\":");
  AppendJsonStrings(out, DistributionColumns(r));
  out->append(",\"edges\":[");
  for (int i = 0; i <= 64; ++i) {
    if (i) out->push_back(',');
    AppendDouble(out, histogram::Layout(r.hist_max).Edge(i));
  }
  out->append("],\n\"rows\":[");
  const auto split_prefix = JsonSplitPrefixes(r);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    out->append(i ? ",\n{" : "\n{");
    out->append(split_prefix[static_cast<size_t>(row.split)]);
    out->append("\"gene\":");
    AppendJsonString(out, r.genes[static_cast<size_t>(row.gene)]);
    out->append(",\"n_cells\":");
    AppendInt(out, row.stats.n_cells);
    if (!r.HasDistribution(i)) {
      out->append(",\"zeros\":null,\"bins\":null}");
      continue;
    }
    out->append(",\"zeros\":");
    AppendInt(out, row.stats.n_cells - row.stats.nnz);
    out->append(",\"bins\":[");
    for (int b = 0; b < 64; ++b) {
      if (b) out->push_back(',');
      AppendInt(out, static_cast<int64_t>(r.bins[i][static_cast<size_t>(b)]));
    }
    out->append("]}");
  }
  out->append(r.rows.empty() ? "]" : "\n]");
}

std::string FormatDistributionJson(const QueryResult& r) {
  std::string out = "{";
  AppendDistributionJson(r, &out);
  out.append(",\n\"notes\":");
  AppendJsonStrings(&out, r.notes);
  out.append("}\n");
  return out;
}

}  // namespace cellcube
