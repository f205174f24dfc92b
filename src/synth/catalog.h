// The biology `cellcube synth` draws from: tissues with their disease, cell types
// (Cell Ontology names) with the tissues they occur in and real human marker genes,
// housekeeping genes, sex-specific genes and disease response genes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cellcube::synth {

enum TissueId : uint8_t { kLung, kLiver, kBlood, kKidney, kColon, kNumTissues };

struct TissueInfo {
  const char* name;
  const char* disease;  // the disease studied in datasets of this tissue
  bool cancer;          // donors with the disease have a cancer stage
};

struct CellTypeInfo {
  const char* name;
  uint32_t tissues;                  // bit (1 << TissueId) per tissue it occurs in
  double abundance;                  // typical share, relative to other types of the tissue
  double rna;                        // RNA content: scales the cell's library size
  bool malignant;                    // only in cancer samples
  std::vector<const char*> markers;  // genes strongly up in this type
};

const std::vector<TissueInfo>& Tissues();
const std::vector<CellTypeInfo>& CellTypes();

// Gene groups with a known symbol.
const std::vector<const char*>& HousekeepingGenes();  // highly expressed everywhere
const std::vector<const char*>& FemaleGenes();        // expressed in female cells only
const std::vector<const char*>& MaleGenes();          // chrY genes
const std::vector<const char*>& InterferonGenes();    // up in COVID-19 donors
const std::vector<const char*>& TumourGenes();        // up in cancer donors
// The ontology term id of a catalogue value (docs/SYNTH.md "Ontology terms"): a cell
// type's Cell Ontology id, a tissue's UBERON id, a disease's MONDO id, and PATO's
// "normal" (PATO:0000461) for healthy donors, as CELLxGENE labels them; nullptr for any
// other value. Every id is checked against the term maps by tests/python/test_synth_terms.py.
const char* TermId(const std::string& value);
// Every (value, id) pair of TermId, for the demo's term maps (scripts/ontology_subset.py).
const std::vector<std::pair<const char*, const char*>>& TermIds();

// Symbols that are lncRNAs rather than protein coding.
bool IsLncRna(const std::string& symbol);

// Every known symbol above, each once, in a fixed order.
const std::vector<std::string>& KnownSymbols();

}  // namespace cellcube::synth
