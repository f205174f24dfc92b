// The engine's view of a store's ontology terms (query/engine_internal.h, docs/ONTOLOGY.md):
// which columns are backed, each value's term, and the calls built on them.
#include <algorithm>

#include "cellcube/query.h"
#include "query/engine_internal.h"
#include "util/text.h"

namespace cellcube {
namespace query {

Terms Terms::Of(const StoreData& meta) {
  Terms t;
  const StoreOntologies& o = meta.ontology;
  if (o.empty()) return t;
  t.index = std::make_unique<const ontology::TermIndex>(o);
  t.column_ontology.assign(meta.columns.size(), -1);
  t.value_term.resize(meta.columns.size());
  for (size_t k = 0; k < o.columns.size(); ++k)
    for (size_t c = 0; c < meta.columns.size(); ++c)
      if (meta.columns[c] == o.columns[k]) t.column_ontology[c] = o.column_ontology[k];
  for (size_t c = 0; c < meta.columns.size(); ++c) {
    const int32_t ont = t.column_ontology[c];
    for (const auto& label : meta.labels[c]) {
      const int32_t term = ont < 0 ? -1 : t.index->FindLabel(ont, label);
      t.value_term[c].push_back(term);
    }
  }
  return t;
}

void Terms::Flag(int32_t column, int32_t term, bool subtree, uint8_t* flags) const {
  const auto& terms = value_term[static_cast<size_t>(column)];
  for (size_t l = 0; l < terms.size(); ++l)
    if (terms[l] >= 0 && (terms[l] == term || (subtree && index->InSubtree(terms[l], term))))
      flags[l + 1] = 1;
}

Terms::Rolled Terms::Roll(const StoreData& meta, int32_t column,
                          const std::vector<int32_t>& groups) const {
  const auto c = static_cast<size_t>(column);
  // Cells per label first (labels are few), then per term.
  std::vector<int64_t> per_label(meta.labels[c].size(), 0);
  for (int32_t g : groups) {
    const int32_t code = meta.codes[c][static_cast<size_t>(g)];
    if (code >= 0) per_label[static_cast<size_t>(code)] += meta.n_cells[static_cast<size_t>(g)];
  }
  Rolled out;
  std::vector<std::pair<int32_t, int64_t>> own;
  for (size_t l = 0; l < per_label.size(); ++l) {
    if (per_label[l] == 0) continue;
    const int32_t term = value_term[c][l];
    if (term >= 0)
      own.emplace_back(term, per_label[l]);
    else
      out.plain.push_back(static_cast<int32_t>(l));
  }
  out.shown = index->Rows(own);
  return out;
}

}  // namespace query

bool QueryEngine::IsBacked(int32_t column) const { return impl_->terms.Backed(column); }

const std::string& QueryEngine::TermId(int32_t column, int32_t code) const {
  return impl_->terms.IdOf(store_->meta(), column, code);
}

std::string QueryEngine::TermIdOf(int32_t column, const std::string& label) const {
  if (!IsBacked(column)) return "";
  const int32_t term = impl_->terms.index->FindLabel(
      impl_->terms.column_ontology[static_cast<size_t>(column)], label);
  return term < 0 ? "" : store_->meta().ontology.term_ids[static_cast<size_t>(term)];
}

Status QueryEngine::CheckRollup(const std::vector<std::string>& columns) const {
  for (const auto& name : columns) {
    CC_ASSIGN_OR_RETURN(int32_t c, ColumnIndex(name));
    if (IsBacked(c)) continue;
    std::vector<std::string> backed;
    const auto& meta = store_->meta();
    for (size_t k = 0; k < meta.columns.size(); ++k)
      if (IsBacked(static_cast<int32_t>(k))) backed.push_back(meta.columns[k]);
    return Status::InvalidArgument(
        "cannot roll up column '" + name + "': no ontology backs it" +
        (backed.empty() ? std::string(" (this store has no ontology terms: build it with "
                                      "--ontology to roll up cell types, tissues or diseases)")
                        : " (the store's ontology-backed columns: " + QuoteList(backed) + ")"));
  }
  return Status::Ok();
}

std::vector<uint8_t> QueryEngine::AncestorValues(int32_t column,
                                                 const std::vector<std::string>& values) const {
  const auto c = static_cast<size_t>(column);
  const auto& meta = store_->meta();
  std::vector<uint8_t> flags(meta.labels[c].size() + 1, 0);
  const query::Terms& t = impl_->terms;
  if (!t.Backed(column)) return flags;
  for (const auto& value : values) {
    const int32_t term = t.Find(column, value);
    if (term < 0) continue;
    const auto& labels = t.value_term[c];
    for (size_t l = 0; l < labels.size(); ++l)
      if (labels[l] >= 0 && labels[l] != term && t.index->InSubtree(term, labels[l]))
        flags[l + 1] = 1;
  }
  return flags;
}

std::vector<QueryEngine::RolledValue> QueryEngine::RolledValues(
    int32_t column, const std::vector<int32_t>& groups) const {
  const auto& meta = store_->meta();
  std::vector<RolledValue> out;
  if (!IsBacked(column)) return out;
  const auto rolled = impl_->terms.Roll(meta, column, groups);
  const StoreOntologies& o = meta.ontology;
  for (size_t i = 0; i < rolled.shown.terms.size(); ++i) {
    const auto term = static_cast<size_t>(rolled.shown.terms[i]);
    out.push_back({o.term_labels[term], o.term_ids[term], rolled.shown.depth[i]});
  }
  for (int32_t code : rolled.plain)
    out.push_back({meta.labels[static_cast<size_t>(column)][static_cast<size_t>(code)], "", 0});
  return out;
}

}  // namespace cellcube
