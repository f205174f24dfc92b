// Assembling a store's metadata (groups, genes, datasets) from parts, without its
// entries (internal to src/store): the metadata half of build, add and merge, and of
// remove. The entries follow, streamed, in the same part order (store_stream.h).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"

namespace cellcube {

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

// Concatenates parts with disjoint datasets: groups stacked in part order, genes
// united by id in order of first appearance, column values united.
class MetaBuilder {
 public:
  MetaBuilder();

  // Adds a part's genes to the union (the first non-empty symbol of a gene wins) and
  // returns the part's gene map: its gene -> the output's.
  std::vector<int32_t> AddGenes(const std::vector<std::string>& ids,
                                const std::vector<std::string>& symbols);
  // Adds a part's groups (`columns`, `labels`, `codes`, `n_cells`) and `datasets`, whose
  // measured genes are the part's and mapped with `gene_map`. Call in the same order as
  // AddGenes; a dataset name already added is an error.
  [[nodiscard]] Status AddGroups(const StoreData& part, const std::vector<int32_t>& gene_map);

  // Unites `terms` with the output's (ontology::Unite); AddGroups does it for a part's.
  [[nodiscard]] Status AddOntology(const StoreOntologies& terms);
  // What uniting ontologies had to say (e.g. two versions of one ontology).
  const std::vector<std::string>& notes() const { return notes_; }

  int64_t n_groups() const { return static_cast<int64_t>(out_.n_cells.size()); }
  int64_t n_genes() const { return static_cast<int64_t>(out_.gene_ids.size()); }
  // The metadata (entry vectors empty). The builder is spent.
  StoreData Finish();

 private:
  StoreData out_;
  LabelSet column_names_;
  std::vector<LabelSet> values_;
  std::unordered_map<std::string, int32_t> gene_index_;
  std::unordered_set<std::string> dataset_names_;
  std::vector<std::string> notes_;
};

// What `remove` keeps of a store.
struct Removal {
  StoreData meta;                  // the kept groups, genes, values and datasets
  std::vector<int32_t> new_group;  // per old group: its new number, -1 = removed
  std::vector<int32_t> new_gene;   // per old gene: its new number, -1 = removed
};

// Drops the named datasets (unknown names are an error suggesting near names), and the
// genes and column values no remaining dataset uses, from a store's metadata.
Result<Removal> PlanRemoval(const StoreData& meta, const std::vector<std::string>& names);

}  // namespace cellcube
