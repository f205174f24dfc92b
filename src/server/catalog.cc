#include "server/catalog.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "util/text.h"

namespace cellcube::server {
namespace {

using nlohmann::json;

std::vector<std::vector<int64_t>> CellsPerValue(const StoreData& m) {
  std::vector<std::vector<int64_t>> out;
  for (size_t c = 0; c < m.columns.size(); ++c) {
    std::vector<int64_t> counts(m.labels[c].size() + 1, 0);
    for (int64_t g = 0; g < m.n_groups(); ++g) {
      int32_t code = m.codes[c][g];
      counts[code < 0 ? counts.size() - 1 : static_cast<size_t>(code)] += m.n_cells[g];
    }
    out.push_back(std::move(counts));
  }
  return out;
}

json ColumnsJson(const StoreData& m, const std::vector<std::vector<int64_t>>& counts,
                 bool keep_zero) {
  json columns = json::array();
  for (size_t c = 0; c < m.columns.size(); ++c) {
    json values = json::array();
    for (size_t l = 0; l < m.labels[c].size(); ++l)
      if (keep_zero || counts[c][l] > 0)
        values.push_back({{"value", m.labels[c][l]}, {"n_cells", counts[c][l]}});
    if (counts[c].back() > 0) values.push_back({{"value", "NA"}, {"n_cells", counts[c].back()}});
    columns.push_back({{"name", m.columns[c]}, {"values", values}});
  }
  return columns;
}

}  // namespace

std::string DonorColumn(const StoreData& meta) {
  for (const char* name : {"donor", "donor_id", "individual"})
    for (const auto& c : meta.columns)
      if (c == name) return c;
  return "";
}

Catalog::Catalog(std::shared_ptr<const QueryEngine> engine) : engine_(std::move(engine)) {
  const StoreData& m = engine_->store().meta();
  int64_t cells = 0;
  json datasets = json::array();
  for (const auto& d : m.datasets) {
    cells += d.n_cells;
    datasets.push_back({{"name", d.name},
                        {"n_cells", d.n_cells},
                        {"n_genes", d.n_genes},
                        {"n_groups", d.n_groups},
                        {"transform", d.transform}});
  }
  json metrics = json::array();
  for (Metric metric : AllMetrics()) metrics.push_back(MetricName(metric));
  const std::string donor = DonorColumn(m);
  std::string name = engine_->store().path();
  name = name.substr(name.find_last_of('/') == std::string::npos ? 0 : name.find_last_of('/') + 1);
  meta_json_ = json{{"store", name},
                    {"n_cells", cells},
                    {"n_genes", engine_->store().n_genes()},
                    {"n_groups", m.n_groups()},
                    {"datasets", datasets},
                    {"columns", ColumnsJson(m, CellsPerValue(m), false)},
                    {"metrics", metrics},
                    {"has_donor", !donor.empty()},
                    {"donor_column", donor.empty() ? json(nullptr) : json(donor)}}
                   .dump();
  const StringList& ids = engine_->store().gene_ids();
  const StringList& symbols = engine_->store().gene_symbols();
  for (int32_t g = 0; g < static_cast<int32_t>(ids.size()); ++g) {
    ids_.push_back({ToLower(std::string(ids[static_cast<size_t>(g)])), g});
    if (!symbols[static_cast<size_t>(g)].empty())
      symbols_.push_back({ToLower(std::string(symbols[static_cast<size_t>(g)])), g});
  }
  auto by_key = [](const Key& a, const Key& b) { return a.lower < b.lower; };
  std::sort(ids_.begin(), ids_.end(), by_key);
  std::sort(symbols_.begin(), symbols_.end(), by_key);
  for (size_t c = 0; c < m.columns.size(); ++c) {
    std::unordered_map<std::string, int32_t> codes;
    for (size_t l = 0; l < m.labels[c].size(); ++l)
      codes.emplace(m.labels[c][l], static_cast<int32_t>(l));
    code_of_.push_back(std::move(codes));
  }
}

std::vector<int32_t> Catalog::SearchGenes(const std::string& prefix, size_t limit) const {
  const std::string p = ToLower(prefix);
  std::vector<int32_t> out;
  std::vector<bool> taken;
  auto scan = [&](const std::vector<Key>& keys) {
    auto it = std::lower_bound(keys.begin(), keys.end(), p,
                               [](const Key& k, const std::string& v) { return k.lower < v; });
    for (; it != keys.end() && out.size() < limit; ++it) {
      if (it->lower.compare(0, p.size(), p) != 0) break;
      if (std::find(out.begin(), out.end(), it->gene) == out.end()) out.push_back(it->gene);
    }
  };
  scan(symbols_);
  scan(ids_);
  return out;
}

Result<Catalog::Counts> Catalog::FacetCounts(const std::vector<WhereClause>& where,
                                             const std::vector<std::string>& datasets) const {
  const StoreData& m = engine_->store().meta();
  const size_t n_cols = m.columns.size();
  // allowed[c][code + 1]: whether a group with that code passes column c's filter.
  std::vector<std::vector<bool>> allowed(n_cols);
  auto restrict_column = [&](int32_t c, const std::vector<std::string>& values) -> Status {
    std::vector<bool> ok(m.labels[c].size() + 1, false);
    for (const auto& v : values) {
      if (v == "NA") {
        ok[0] = true;
        continue;
      }
      auto it = code_of_[c].find(v);
      if (it == code_of_[c].end())
        return Status::NotFound("no value '" + v + "' in column '" + m.columns[c] + "'" +
                                SuggestionSuffix(v, m.labels[c]));
      ok[static_cast<size_t>(it->second) + 1] = true;
    }
    if (allowed[c].empty()) {
      allowed[c] = ok;
    } else {
      for (size_t i = 0; i < ok.size(); ++i) allowed[c][i] = allowed[c][i] || ok[i];
    }
    return Status::Ok();
  };
  if (!datasets.empty()) CC_RETURN_IF_ERROR(restrict_column(0, datasets));
  for (const auto& clause : where) {
    CC_ASSIGN_OR_RETURN(int32_t c, engine_->ColumnIndex(clause.column));
    if (c == 0 && !datasets.empty()) {
      // Both `datasets` and a where on dataset: groups must pass both.
      std::vector<bool> before = allowed[0];
      allowed[0].clear();
      CC_RETURN_IF_ERROR(restrict_column(0, clause.values));
      for (size_t i = 0; i < before.size(); ++i) allowed[0][i] = allowed[0][i] && before[i];
      continue;
    }
    CC_RETURN_IF_ERROR(restrict_column(c, clause.values));
  }
  Counts out;
  out.per_value.resize(n_cols);
  for (size_t c = 0; c < n_cols; ++c) out.per_value[c].assign(m.labels[c].size() + 1, 0);
  for (int64_t g = 0; g < m.n_groups(); ++g) {
    size_t failing = 0, failed_column = 0;
    for (size_t c = 0; c < n_cols; ++c) {
      if (allowed[c].empty()) continue;
      if (!allowed[c][static_cast<size_t>(m.codes[c][g] + 1)]) {
        ++failing;
        failed_column = c;
      }
    }
    if (failing > 1) continue;
    for (size_t c = 0; c < n_cols; ++c) {
      if (failing == 1 && c != failed_column) continue;  // only its own filter excludes it there
      int32_t code = m.codes[c][g];
      out.per_value[c][code < 0 ? m.labels[c].size() : static_cast<size_t>(code)] += m.n_cells[g];
    }
    if (failing == 0) out.selected += m.n_cells[g];
  }
  return out;
}

std::string Catalog::CountsJson(const Counts& counts) const {
  const StoreData& m = engine_->store().meta();
  return json{{"columns", ColumnsJson(m, counts.per_value, true)}, {"n_cells", counts.selected}}
      .dump();
}

}  // namespace cellcube::server
