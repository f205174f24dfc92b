// Invariants and the set operations (concatenate, remove) on StoreData.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "cellcube/store.h"
#include "util/text.h"

namespace cellcube {
namespace {

Status Broken(const std::string& what) { return Status::Corrupt("store: " + what); }

// Maps labels to codes while keeping first-seen order.
struct LabelSet {
  std::vector<std::string> labels;
  std::unordered_map<std::string, int32_t> index;
  int32_t Add(const std::string& label) {
    auto [it, inserted] = index.emplace(label, static_cast<int32_t>(labels.size()));
    if (inserted) labels.push_back(label);
    return it->second;
  }
};

}  // namespace

Status StoreData::Validate() const {
  if (columns.size() < 2 || columns[0] != "dataset" || columns[1] != "cell_type")
    return Broken("the first grouping columns must be 'dataset' and 'cell_type'");
  if (labels.size() != columns.size() || codes.size() != columns.size())
    return Broken("column labels or codes missing");
  const int64_t groups = n_groups();
  for (size_t c = 0; c < columns.size(); ++c) {
    if (static_cast<int64_t>(codes[c].size()) != groups)
      return Broken("column '" + columns[c] + "' has the wrong number of groups");
    const auto n_labels = static_cast<int32_t>(labels[c].size());
    for (int32_t code : codes[c])
      if (code < -1 || code >= n_labels || (c == 0 && code < 0))
        return Broken("column '" + columns[c] + "' has a code out of range");
  }
  if (datasets.size() != labels[0].size()) return Broken("dataset records and names disagree");
  for (size_t d = 0; d < datasets.size(); ++d)
    if (datasets[d].name != labels[0][d]) return Broken("dataset records and names disagree");
  for (int64_t n : n_cells)
    if (n <= 0) return Broken("a group has no cells");
  if (gene_symbols.size() != gene_ids.size()) return Broken("gene symbols and ids disagree");
  if (static_cast<int64_t>(indptr.size()) != n_genes() + 1 || indptr[0] != 0 ||
      indptr.back() != n_entries())
    return Broken("indptr does not match the entries");
  const size_t entries = group.size();
  if (nnz.size() != entries || sum.size() != entries || sumsq.size() != entries)
    return Broken("statistics have different lengths");
  // Which genes each dataset measured, to check entries only lie where measured.
  std::vector<std::vector<bool>> measured(datasets.size(), std::vector<bool>(gene_ids.size()));
  for (size_t d = 0; d < datasets.size(); ++d)
    for (int32_t g : datasets[d].measured_genes) {
      if (g < 0 || g >= n_genes()) return Broken("measured gene out of range");
      measured[d][static_cast<size_t>(g)] = true;
    }
  for (int64_t g = 0; g < n_genes(); ++g) {
    if (indptr[g + 1] < indptr[g]) return Broken("indptr decreases");
    for (int64_t k = indptr[g]; k < indptr[g + 1]; ++k) {
      int32_t row = group[k];
      if (row < 0 || row >= groups) return Broken("entry group out of range");
      if (k > indptr[g] && row <= group[k - 1]) return Broken("entry groups not ascending");
      if (!measured[static_cast<size_t>(codes[0][row])][static_cast<size_t>(g)])
        return Broken("an entry lies in a gene its dataset did not measure");
      if (nnz[k] > static_cast<uint64_t>(n_cells[row])) return Broken("nnz exceeds the cells");
    }
  }
  return Status::Ok();
}

Result<StoreData> Concatenate(const std::vector<const StoreData*>& parts) {
  StoreData out;
  // Columns: dataset, cell_type, then the others in order of first appearance.
  LabelSet column_names;
  column_names.Add("dataset");
  column_names.Add("cell_type");
  for (const StoreData* p : parts)
    for (const auto& c : p->columns) column_names.Add(c);
  out.columns = column_names.labels;
  std::vector<LabelSet> values(out.columns.size());
  out.codes.assign(out.columns.size(), {});

  std::unordered_set<std::string> dataset_names;
  LabelSet genes;
  std::vector<std::vector<int32_t>> gene_map(parts.size());  // per part: local -> union
  for (size_t p = 0; p < parts.size(); ++p) {
    const StoreData& part = *parts[p];
    for (const auto& d : part.datasets)
      if (!dataset_names.insert(d.name).second)
        return Status::InvalidArgument("dataset '" + d.name +
                                       "' is in more than one store; datasets must be disjoint "
                                       "(remove it from one, or rename it with NAME=PATH)");
    for (size_t c = 0; c < part.columns.size(); ++c) {
      const size_t oc = static_cast<size_t>(column_names.index.at(part.columns[c]));
      std::vector<int32_t> remap(part.labels[c].size());
      for (size_t l = 0; l < remap.size(); ++l) remap[l] = values[oc].Add(part.labels[c][l]);
      for (int32_t code : part.codes[c]) out.codes[oc].push_back(code < 0 ? -1 : remap[code]);
    }
    for (size_t oc = 0; oc < out.columns.size(); ++oc)  // columns this part lacks: NA
      out.codes[oc].resize(out.codes[0].size(), -1);
    out.n_cells.insert(out.n_cells.end(), part.n_cells.begin(), part.n_cells.end());
    for (size_t g = 0; g < part.gene_ids.size(); ++g) {
      int32_t u = genes.Add(part.gene_ids[g]);
      gene_map[p].push_back(u);
      if (static_cast<size_t>(u) == out.gene_symbols.size()) out.gene_symbols.push_back("");
      if (out.gene_symbols[u].empty()) out.gene_symbols[u] = part.gene_symbols[g];
    }
  }
  for (size_t c = 0; c < values.size(); ++c) out.labels.push_back(values[c].labels);
  out.gene_ids = genes.labels;

  // Entries: for each union gene, the parts' entries in part order (groups ascend).
  std::vector<std::vector<int32_t>> local_of(parts.size(),
                                             std::vector<int32_t>(out.gene_ids.size(), -1));
  std::vector<int32_t> group_offset(parts.size(), 0);
  int64_t total_entries = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    for (size_t g = 0; g < gene_map[p].size(); ++g)
      local_of[p][gene_map[p][g]] = static_cast<int32_t>(g);
    if (p) group_offset[p] = group_offset[p - 1] + static_cast<int32_t>(parts[p - 1]->n_groups());
    total_entries += parts[p]->n_entries();
  }
  out.group.reserve(total_entries);
  out.nnz.reserve(total_entries);
  out.sum.reserve(total_entries);
  out.sumsq.reserve(total_entries);
  out.indptr.assign(1, 0);
  for (size_t u = 0; u < out.gene_ids.size(); ++u) {
    for (size_t p = 0; p < parts.size(); ++p) {
      int32_t g = local_of[p][u];
      if (g < 0) continue;
      const StoreData& part = *parts[p];
      for (int64_t k = part.indptr[g]; k < part.indptr[g + 1]; ++k) {
        out.group.push_back(part.group[k] + group_offset[p]);
        out.nnz.push_back(part.nnz[k]);
        out.sum.push_back(part.sum[k]);
        out.sumsq.push_back(part.sumsq[k]);
      }
    }
    out.indptr.push_back(static_cast<int64_t>(out.group.size()));
  }
  for (size_t p = 0; p < parts.size(); ++p) {
    for (DatasetRecord d : parts[p]->datasets) {
      for (auto& g : d.measured_genes) g = gene_map[p][g];
      std::sort(d.measured_genes.begin(), d.measured_genes.end());
      out.datasets.push_back(std::move(d));
    }
  }
  return out;
}

Result<StoreData> RemoveDatasets(const StoreData& store, const std::vector<std::string>& names) {
  std::vector<bool> drop(store.datasets.size(), false);
  for (const auto& name : names) {
    auto it = std::find(store.labels[0].begin(), store.labels[0].end(), name);
    if (it == store.labels[0].end())
      return Status::NotFound("no dataset '" + name + "' in the store" +
                              SuggestionSuffix(name, store.labels[0]));
    drop[static_cast<size_t>(it - store.labels[0].begin())] = true;
  }
  StoreData out;
  // Groups kept, and the values and genes they still use.
  std::vector<int32_t> new_group(static_cast<size_t>(store.n_groups()), -1);
  std::vector<size_t> kept_groups;
  for (int64_t g = 0; g < store.n_groups(); ++g) {
    if (drop[static_cast<size_t>(store.codes[0][g])]) continue;
    new_group[g] = static_cast<int32_t>(kept_groups.size());
    kept_groups.push_back(static_cast<size_t>(g));
  }
  std::vector<int32_t> new_gene(store.gene_ids.size(), -1);
  for (size_t d = 0; d < store.datasets.size(); ++d)
    if (!drop[d])
      for (int32_t g : store.datasets[d].measured_genes) new_gene[g] = 0;
  for (size_t g = 0, next = 0; g < new_gene.size(); ++g)
    if (new_gene[g] == 0) {
      new_gene[g] = static_cast<int32_t>(next++);
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
  out.indptr.assign(1, 0);
  for (size_t g = 0; g < store.gene_ids.size(); ++g) {
    if (new_gene[g] < 0) continue;
    for (int64_t k = store.indptr[g]; k < store.indptr[g + 1]; ++k) {
      int32_t row = new_group[store.group[k]];
      if (row < 0) continue;
      out.group.push_back(row);
      out.nnz.push_back(store.nnz[k]);
      out.sum.push_back(store.sum[k]);
      out.sumsq.push_back(store.sumsq[k]);
    }
    out.indptr.push_back(static_cast<int64_t>(out.group.size()));
  }
  for (size_t d = 0; d < store.datasets.size(); ++d) {
    if (drop[d]) continue;
    DatasetRecord r = store.datasets[d];
    for (auto& g : r.measured_genes) g = new_gene[g];
    out.datasets.push_back(std::move(r));
  }
  return out;
}

DatasetInput ParseDatasetInput(const std::string& arg) {
  DatasetInput in;
  auto eq = arg.find('=');
  if (eq != std::string::npos && eq > 0 && arg.find('/') > eq) {
    in.name = arg.substr(0, eq);
    in.path = arg.substr(eq + 1);
    return in;
  }
  in.path = arg;
  std::string base =
      arg.substr(arg.find_last_of('/') == std::string::npos ? 0 : arg.find_last_of('/') + 1);
  auto dot = base.rfind(".h5ad");
  in.name = dot != std::string::npos && dot + 5 == base.size() ? base.substr(0, dot) : base;
  return in;
}

}  // namespace cellcube
