#include "ontology/term_tree_json.h"

#include "ontology/term_index.h"

namespace cellcube::ontology {

nlohmann::json TermTreeJson(const StoreOntologies& o) {
  const TermIndex index(o);
  nlohmann::json terms = nlohmann::json::array();
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    const auto i = static_cast<size_t>(t);
    nlohmann::json parents = nlohmann::json::array();
    for (int32_t p : index.Parents(t)) parents.push_back(o.term_ids[static_cast<size_t>(p)]);
    terms.push_back({{"id", o.term_ids[i]},
                     {"label", o.term_labels[i]},
                     {"ontology", o.ontologies[static_cast<size_t>(o.term_ontology[i])].name},
                     {"parents", parents}});
  }
  return terms;
}

}  // namespace cellcube::ontology
