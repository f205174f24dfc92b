#include "store/meta_builder.h"

#include <algorithm>

#include "ontology/embed.h"
#include "util/text.h"

namespace cellcube {

MetaBuilder::MetaBuilder() {
  column_names_.Add("dataset");
  column_names_.Add("cell_type");
  values_.resize(2);
  out_.codes.resize(2);
}

std::vector<int32_t> MetaBuilder::AddGenes(const std::vector<std::string>& ids,
                                           const std::vector<std::string>& symbols) {
  std::vector<int32_t> map(ids.size());
  for (size_t g = 0; g < ids.size(); ++g) {
    auto [it, inserted] = gene_index_.emplace(ids[g], static_cast<int32_t>(out_.gene_ids.size()));
    if (inserted) {
      out_.gene_ids.push_back(ids[g]);
      out_.gene_symbols.emplace_back();
    }
    map[g] = it->second;
    std::string& symbol = out_.gene_symbols[static_cast<size_t>(it->second)];
    if (symbol.empty() && g < symbols.size()) symbol = symbols[g];
  }
  return map;
}

Status MetaBuilder::AddGroups(const StoreData& part, const std::vector<int32_t>& gene_map) {
  for (const auto& d : part.datasets)
    if (!dataset_names_.insert(d.name).second)
      return Status::InvalidArgument("dataset '" + d.name +
                                     "' is in more than one store; datasets must be disjoint "
                                     "(remove it from one, or rename it with NAME=PATH)");
  CC_RETURN_IF_ERROR(AddOntology(part.ontology));
  const size_t before = out_.n_cells.size();
  for (size_t c = 0; c < part.columns.size(); ++c) {
    const auto oc = static_cast<size_t>(column_names_.Add(part.columns[c]));
    if (oc == values_.size()) {  // a new column: NA for the groups before
      values_.emplace_back();
      out_.codes.emplace_back(before, -1);
    }
    std::vector<int32_t> remap(part.labels[c].size());
    for (size_t l = 0; l < remap.size(); ++l) remap[l] = values_[oc].Add(part.labels[c][l]);
    for (int32_t code : part.codes[c]) out_.codes[oc].push_back(code < 0 ? -1 : remap[code]);
  }
  out_.n_cells.insert(out_.n_cells.end(), part.n_cells.begin(), part.n_cells.end());
  for (auto& codes : out_.codes) codes.resize(out_.n_cells.size(), -1);  // columns it lacks
  for (DatasetRecord d : part.datasets) {
    for (auto& g : d.measured_genes) g = gene_map[static_cast<size_t>(g)];
    std::sort(d.measured_genes.begin(), d.measured_genes.end());
    out_.datasets.push_back(std::move(d));
  }
  return Status::Ok();
}

Status MetaBuilder::AddOntology(const StoreOntologies& terms) {
  if (terms.empty()) return Status::Ok();
  if (out_.ontology.empty()) {
    out_.ontology = terms;
    return Status::Ok();
  }
  CC_ASSIGN_OR_RETURN(out_.ontology, ontology::Unite(out_.ontology, terms, &notes_));
  return Status::Ok();
}

StoreData MetaBuilder::Finish() {
  out_.columns = column_names_.labels;
  out_.labels.clear();
  for (auto& v : values_) out_.labels.push_back(std::move(v.labels));
  return std::move(out_);
}

Result<Removal> PlanRemoval(const StoreData& store, const std::vector<std::string>& names) {
  std::vector<bool> drop(store.datasets.size(), false);
  for (const auto& name : names) {
    auto it = std::find(store.labels[0].begin(), store.labels[0].end(), name);
    if (it == store.labels[0].end())
      return Status::NotFound("no dataset '" + name + "' in the store" +
                              SuggestionSuffix(name, store.labels[0]));
    drop[static_cast<size_t>(it - store.labels[0].begin())] = true;
  }
  Removal r;
  StoreData& out = r.meta;
  out.hist_max = store.hist_max;  // the same layout: the kept records are carried
  out.ontology = store.ontology;  // kept whole (docs/ONTOLOGY.md)
  r.new_group.assign(static_cast<size_t>(store.n_groups()), -1);
  std::vector<size_t> kept_groups;
  for (int64_t g = 0; g < store.n_groups(); ++g) {
    if (drop[static_cast<size_t>(store.codes[0][g])]) continue;
    r.new_group[g] = static_cast<int32_t>(kept_groups.size());
    kept_groups.push_back(static_cast<size_t>(g));
  }
  r.new_gene.assign(store.gene_ids.size(), -1);
  for (size_t d = 0; d < store.datasets.size(); ++d)
    if (!drop[d])
      for (int32_t g : store.datasets[d].measured_genes) r.new_gene[g] = 0;
  for (size_t g = 0, next = 0; g < r.new_gene.size(); ++g)
    if (r.new_gene[g] == 0) {
      r.new_gene[g] = static_cast<int32_t>(next++);
      out.gene_ids.push_back(store.gene_ids[g]);
      out.gene_symbols.push_back(store.gene_symbols[g]);
    }
  for (size_t c = 0; c < store.columns.size(); ++c) {
    std::vector<int32_t> remap(store.labels[c].size(), -1);
    std::vector<bool> used(store.labels[c].size(), false);
    for (size_t g : kept_groups)
      if (store.codes[c][g] >= 0) used[store.codes[c][g]] = true;
    bool any = false;
    std::vector<std::string> labels;
    for (size_t l = 0; l < used.size(); ++l)
      if (used[l]) {
        remap[l] = static_cast<int32_t>(labels.size());
        labels.push_back(store.labels[c][l]);
        any = true;
      }
    if (!any && c >= 2) continue;  // a column only the removed datasets had
    std::vector<int32_t> codes;
    for (size_t g : kept_groups)
      codes.push_back(store.codes[c][g] < 0 ? -1 : remap[store.codes[c][g]]);
    out.columns.push_back(store.columns[c]);
    out.labels.push_back(std::move(labels));
    out.codes.push_back(std::move(codes));
  }
  for (size_t g : kept_groups) out.n_cells.push_back(store.n_cells[g]);
  for (size_t d = 0; d < store.datasets.size(); ++d) {
    if (drop[d]) continue;
    DatasetRecord rec = store.datasets[d];
    for (auto& g : rec.measured_genes) g = r.new_gene[g];
    out.datasets.push_back(std::move(rec));
  }
  return r;
}

}  // namespace cellcube
