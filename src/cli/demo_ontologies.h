// The demo's term maps (data/ontology/README.md), embedded in the binary at build time.
#pragma once

#include <string>
#include <vector>

namespace cellcube::cli {

struct EmbeddedFile {
  std::string name;   // the file's name, e.g. "CL-ontology-v2026-03-26.subset.json.gz"
  std::string bytes;  // its content
};

std::vector<EmbeddedFile> DemoOntologies();

}  // namespace cellcube::cli
