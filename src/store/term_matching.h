// Matching a build's grouping columns to ontology terms (docs/ONTOLOGY.md; internal to
// src/store): after every input is planned and before any is aggregated, bind each
// column to the ontology that backs it across all the datasets, give each plan the
// renames that turn its values into their terms' labels, and return the terms to embed.
#pragma once

#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store.h"
#include "ontology/term_map.h"
#include "store/dataset_plan.h"

namespace cellcube {

// The term maps to match against: the files given (build/add --ontology), read before
// any input is planned so that a bad map fails at once; or, for an add given none, the
// store's embedded terms as maps (ids and labels; synonyms are not embedded).
Result<std::vector<ontology::TermMap>> LoadTermMaps(const std::vector<OntologyFile>& files,
                                                    const StoreOntologies& existing);

// `maps`: LoadTermMaps's; `existing`: the store an add adds to, whose bound columns keep
// their ontology. Notes (what backs which column, values
// that match nothing, deprecated ids replaced) go to callbacks.note. Returns the new
// datasets' embedded terms (empty when nothing binds).
Result<StoreOntologies> MatchTerms(const std::vector<ontology::TermMap>& maps,
                                   const StoreOntologies& existing, const BuildCallbacks& callbacks,
                                   std::vector<DatasetPlan>* plans);

}  // namespace cellcube
