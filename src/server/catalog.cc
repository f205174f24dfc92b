#include "server/catalog.h"

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cellcube/de.h"
#include "ontology/term_tree_json.h"
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

// Each column's values with their cell counts; in an ontology-backed column each value
// also gives its term id (null for a plain value), and the column its ontology's name.
json ColumnsJson(const QueryEngine& engine, const std::vector<std::vector<int64_t>>& counts,
                 bool keep_zero) {
  const StoreData& m = engine.store().meta();
  json columns = json::array();
  for (size_t c = 0; c < m.columns.size(); ++c) {
    const auto column = static_cast<int32_t>(c);
    const bool backed = engine.IsBacked(column);
    json values = json::array();
    for (size_t l = 0; l < m.labels[c].size(); ++l) {
      if (!keep_zero && counts[c][l] == 0) continue;
      json value = {{"value", m.labels[c][l]}, {"n_cells", counts[c][l]}};
      if (backed) {
        const std::string& id = engine.TermId(column, static_cast<int32_t>(l));
        value["term_id"] = id.empty() ? json(nullptr) : json(id);
      }
      values.push_back(std::move(value));
    }
    if (counts[c].back() > 0) {
      json na = {{"value", "NA"}, {"n_cells", counts[c].back()}};
      if (backed) na["term_id"] = nullptr;
      values.push_back(std::move(na));
    }
    json entry = {{"name", m.columns[c]}, {"values", values}};
    if (!m.ontology.empty()) {
      json ontology = nullptr;
      for (size_t k = 0; k < m.ontology.columns.size(); ++k)
        if (m.ontology.columns[k] == m.columns[c])
          ontology = m.ontology.ontologies[static_cast<size_t>(m.ontology.column_ontology[k])].name;
      entry["ontology"] = ontology;
    }
    columns.push_back(std::move(entry));
  }
  return columns;
}

// The embedded ontologies (docs/ONTOLOGY.md): each with its version and the columns it
// backs; and the term tree, every embedded term with its label and parents (its nearest
// ancestors), for the page's filters.
json OntologiesJson(const StoreData& m) {
  const StoreOntologies& o = m.ontology;
  json ontologies = json::array();
  for (size_t i = 0; i < o.ontologies.size(); ++i) {
    json columns = json::array();
    for (size_t k = 0; k < o.columns.size(); ++k)
      if (o.column_ontology[k] == static_cast<int32_t>(i)) columns.push_back(o.columns[k]);
    ontologies.push_back(
        {{"name", o.ontologies[i].name},
         {"version",
          o.ontologies[i].version.empty() ? json(nullptr) : json(o.ontologies[i].version)},
         {"columns", columns}});
  }
  return ontologies;
}

}  // namespace

Catalog::Catalog(std::shared_ptr<const QueryEngine> engine) : engine_(std::move(engine)) {
  const StoreData& m = engine_->store().meta();
  int64_t cells = 0;
  json datasets = json::array();
  for (const auto& d : m.datasets) {
    cells += d.n_cells;
    datasets.push_back(
        {{"name", d.name},
         {"n_cells", d.n_cells},
         {"n_genes", d.n_genes},
         {"n_groups", d.n_groups},
         {"transform", d.transform},
         {"negative_values", d.negative_values == NegativeValues::kUnknown
                                 ? json(nullptr)
                                 : json(d.negative_values == NegativeValues::kSome)},
         {"values_above_hist_max",
          d.values_above_hist_max < 0 ? json(nullptr) : json(d.values_above_hist_max)}});
  }
  // The metrics this store answers: the distribution metrics only with histograms.
  json metrics = json::array();
  for (Metric metric : AllMetrics())
    if (m.has_histograms() || !MetricNeedsHistograms(metric)) metrics.push_back(MetricName(metric));
  const json histograms =
      m.has_histograms() ? json{{"bins", 64}, {"max", m.hist_max}} : json(nullptr);
  const std::string donor = DefaultDonorColumn(m);
  std::string name = engine_->store().path();
  name = name.substr(name.find_last_of('/') == std::string::npos ? 0 : name.find_last_of('/') + 1);
  meta_json_ = json{{"store", name},
                    {"n_cells", cells},
                    {"n_genes", engine_->store().n_genes()},
                    {"n_groups", m.n_groups()},
                    {"datasets", datasets},
                    {"columns", ColumnsJson(*engine_, CellsPerValue(m), false)},
                    {"ontologies", OntologiesJson(m)},
                    {"terms", ontology::TermTreeJson(m.ontology)},
                    {"metrics", metrics},
                    {"histograms", histograms},
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

// Facet counts from the engine's own selection (QueryEngine::SelectGroups), so that a
// facet, a query and a DE side agree on every edge (literal "NA" labels, empty lists,
// error wording): the groups the whole selection takes count for every column; a group
// only one column's filter excludes counts for that column too, so each facet shows what
// choosing another of its values would give.
Result<Catalog::Counts> Catalog::FacetCounts(const Population& population) const {
  const StoreData& m = engine_->store().meta();
  const size_t n_cols = m.columns.size();
  const std::vector<WhereClause>& where = population.where;
  CC_ASSIGN_OR_RETURN(const std::vector<int32_t> all, engine_->SelectGroups(population));
  Counts out;
  out.per_value.resize(n_cols);
  for (size_t c = 0; c < n_cols; ++c) out.per_value[c].assign(m.labels[c].size() + 1, 0);
  auto add = [&](size_t c, int32_t g) {
    const int32_t code = m.codes[c][static_cast<size_t>(g)];
    out.per_value[c][code < 0 ? m.labels[c].size() : static_cast<size_t>(code)] +=
        m.n_cells[static_cast<size_t>(g)];
  };
  for (int32_t g : all) {
    for (size_t c = 0; c < n_cols; ++c) add(c, g);
    out.selected += m.n_cells[static_cast<size_t>(g)];
  }
  // Each filtered column: the groups the selection takes without its own filter.
  std::vector<int32_t> filtered;
  if (!population.datasets.empty()) filtered.push_back(0);
  for (const auto& clause : where) {
    CC_ASSIGN_OR_RETURN(const int32_t c, engine_->ColumnIndex(clause.column));
    if (std::find(filtered.begin(), filtered.end(), c) == filtered.end()) filtered.push_back(c);
  }
  for (int32_t c : filtered) {
    Population others;
    others.rollup = population.rollup;
    if (c != 0) others.datasets = population.datasets;
    for (const auto& clause : where)
      if (clause.column != m.columns[static_cast<size_t>(c)]) others.where.push_back(clause);
    CC_ASSIGN_OR_RETURN(const std::vector<int32_t> loose, engine_->SelectGroups(others));
    std::vector<int32_t> extra;
    std::set_difference(loose.begin(), loose.end(), all.begin(), all.end(),
                        std::back_inserter(extra));
    for (int32_t g : extra) add(static_cast<size_t>(c), g);
  }
  return out;
}

std::string Catalog::CountsJson(const Counts& counts) const {
  return json{{"columns", ColumnsJson(*engine_, counts.per_value, true)},
              {"n_cells", counts.selected}}
      .dump();
}

}  // namespace cellcube::server
