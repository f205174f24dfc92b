// Matching a build's grouping columns to ontology terms (docs/ONTOLOGY.md; internal to
// src/store): after every input is planned and before any is aggregated, bind each
// column to the ontology that backs it across all the datasets, give each plan the
// renames that turn its values into their terms' labels, and return the terms to embed.
#pragma once

#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store.h"
#include "store/dataset_plan.h"

namespace cellcube {

// `files`: the term maps given (build/add --ontology); `existing`: the store an add adds
// to, whose embedded terms are matched against (by id and label) when no file is given,
// and whose bound columns keep their ontology. Notes (what backs which column, values
// that match nothing, deprecated ids replaced) go to callbacks.note. Returns the new
// datasets' embedded terms (empty when nothing binds).
Result<StoreOntologies> MatchTerms(const std::vector<OntologyFile>& files,
                                   const StoreOntologies& existing, const BuildCallbacks& callbacks,
                                   std::vector<DatasetPlan>* plans);

}  // namespace cellcube
