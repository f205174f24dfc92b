// What a store keeps of the ontologies (cellcube::StoreOntologies, docs/FORMAT.md
// "Ontology terms"): the terms used and all their ancestors; and uniting two stores'
// terms (add, merge).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"
#include "ontology/term_map.h"

namespace cellcube::ontology {

// A term map's used terms and the columns it backs.
struct UsedTerms {
  const TermMap* map = nullptr;
  std::vector<int32_t> terms;        // term indices into *map (any order, repeats allowed)
  std::vector<std::string> columns;  // the columns it backs
};

// The embedded form: per map with a column or a used term, its name and version; the
// terms and every ancestor of theirs, ascending by id, with their labels and ancestor
// maps (ancestors as indices into the embedded terms, ascending, with the file's
// distances).
StoreOntologies Embed(const std::vector<UsedTerms>& used);

// The union of two stores' terms: ontologies by name (a's version kept; a different
// version in b gives a note via `note`), terms by id (a's label and ancestors kept when
// both have one), columns by name. A column backed by different ontologies in a and b is
// an InvalidArgument error naming it.
Result<StoreOntologies> Unite(const StoreOntologies& a, const StoreOntologies& b,
                              std::vector<std::string>* notes);

}  // namespace cellcube::ontology
