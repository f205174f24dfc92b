// The term tree as `info --json` and /api/v1/meta give it (docs/ONTOLOGY.md): every
// embedded term with its label, its ontology and its parents (its nearest ancestors).
#pragma once

#include <nlohmann/json.hpp>

#include "cellcube/store_data.h"

namespace cellcube::ontology {

nlohmann::json TermTreeJson(const StoreOntologies& terms);

}  // namespace cellcube::ontology
