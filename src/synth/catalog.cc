#include "synth/catalog.h"

#include <unordered_set>

namespace cellcube::synth {
namespace {

constexpr uint32_t Bit(TissueId t) { return 1u << t; }
constexpr uint32_t kAll = (1u << kNumTissues) - 1;
constexpr uint32_t kSolid = kAll & ~Bit(kBlood);

}  // namespace

const std::vector<TissueInfo>& Tissues() {
  static const std::vector<TissueInfo> kTissues = {
      {"lung", "lung adenocarcinoma", true}, {"liver", "hepatocellular carcinoma", true},
      {"blood", "COVID-19", false},          {"kidney", "clear cell renal carcinoma", true},
      {"colon", "colorectal cancer", true},
  };
  return kTissues;
}

// A data table, not logic: one braced entry per cell type (name, tissues, abundance,
// RNA content, malignant, markers). Kept whole, as one list to read and extend; split
// into functions it would only be harder to scan. Its order is part of the seeded
// output: cell types are drawn in this order.
const std::vector<CellTypeInfo>& CellTypes() {
  static const std::vector<CellTypeInfo> kTypes = {
      // Immune cells.
      {"CD4-positive, alpha-beta T cell",
       kAll,
       1.0,
       0.8,
       false,
       {"CD3E", "CD3D", "CD4", "IL7R", "CCR7", "LTB"}},
      {"CD8-positive, alpha-beta T cell",
       kAll,
       0.8,
       0.8,
       false,
       {"CD3E", "CD3D", "CD8A", "CD8B", "GZMK", "CCL5"}},
      {"regulatory T cell",
       kAll,
       0.15,
       0.8,
       false,
       {"CD3E", "CD4", "FOXP3", "IL2RA", "CTLA4", "TIGIT"}},
      {"natural killer cell",
       kAll,
       0.4,
       0.8,
       false,
       {"NKG7", "GNLY", "KLRD1", "PRF1", "GZMB", "KLRF1"}},
      {"B cell", kAll, 0.4, 0.8, false, {"MS4A1", "CD79A", "CD79B", "CD19", "BANK1"}},
      {"plasma cell", kAll, 0.15, 1.6, false, {"JCHAIN", "MZB1", "IGHG1", "XBP1", "SDC1", "IGKC"}},
      {"classical monocyte",
       kAll,
       0.6,
       1.2,
       false,
       {"CD14", "LYZ", "S100A8", "S100A9", "VCAN", "FCN1"}},
      {"non-classical monocyte",
       kAll,
       0.15,
       1.2,
       false,
       {"FCGR3A", "MS4A7", "CX3CR1", "LST1", "LYZ"}},
      {"conventional dendritic cell",
       kAll,
       0.06,
       1.2,
       false,
       {"FCER1A", "CD1C", "CLEC10A", "HLA-DQA1"}},
      {"plasmacytoid dendritic cell",
       kAll,
       0.03,
       1.0,
       false,
       {"LILRA4", "IL3RA", "CLEC4C", "IRF7"}},
      {"mast cell", kSolid, 0.08, 1.0, false, {"TPSAB1", "CPA3", "KIT", "MS4A2"}},
      {"neutrophil",
       Bit(kBlood) | Bit(kLung) | Bit(kLiver),
       0.3,
       0.4,
       false,
       {"CSF3R", "FCGR3B", "CXCR2", "S100A12"}},
      {"macrophage",
       Bit(kLung) | Bit(kKidney) | Bit(kColon),
       0.4,
       1.5,
       false,
       {"CD68", "C1QA", "C1QB", "APOE", "CD163"}},
      {"platelet", Bit(kBlood), 0.05, 0.3, false, {"PPBP", "PF4", "GP9", "ITGA2B"}},
      {"erythrocyte", Bit(kBlood), 0.05, 0.3, false, {"HBB", "HBA1", "HBA2", "ALAS2"}},
      // Lung.
      {"alveolar macrophage",
       Bit(kLung),
       0.8,
       1.8,
       false,
       {"MARCO", "MSR1", "FABP4", "INHBA", "CD68"}},
      {"type I pneumocyte", Bit(kLung), 0.2, 1.0, false, {"AGER", "RTKN2", "HOPX", "EMP2"}},
      {"type II pneumocyte",
       Bit(kLung),
       0.6,
       1.4,
       false,
       {"SFTPC", "SFTPB", "SFTPA1", "NAPSA", "LAMP3"}},
      {"ciliated cell", Bit(kLung), 0.15, 1.2, false, {"FOXJ1", "TPPP3", "CAPS", "PIFO"}},
      {"club cell", Bit(kLung), 0.1, 1.2, false, {"SCGB1A1", "SCGB3A1", "BPIFB1"}},
      // Liver.
      {"hepatocyte", Bit(kLiver), 2.0, 2.0, false, {"ALB", "APOA1", "TTR", "CYP3A4", "APOC3"}},
      {"cholangiocyte", Bit(kLiver), 0.2, 1.0, false, {"KRT19", "KRT7", "SOX9", "ANXA4"}},
      {"Kupffer cell", Bit(kLiver), 0.5, 1.5, false, {"CD5L", "VSIG4", "MARCO", "C1QA", "CD163"}},
      {"hepatic stellate cell", Bit(kLiver), 0.15, 1.0, false, {"LRAT", "RELN", "PDGFRB", "DCN"}},
      // Kidney.
      {"kidney proximal convoluted tubule epithelial cell",
       Bit(kKidney),
       1.5,
       1.6,
       false,
       {"LRP2", "CUBN", "SLC34A1", "ALDOB"}},
      {"podocyte", Bit(kKidney), 0.1, 1.2, false, {"NPHS1", "NPHS2", "PODXL", "WT1"}},
      {"kidney loop of Henle thick ascending limb epithelial cell",
       Bit(kKidney),
       0.5,
       1.3,
       false,
       {"UMOD", "SLC12A1", "CLDN16"}},
      {"kidney collecting duct principal cell",
       Bit(kKidney),
       0.4,
       1.2,
       false,
       {"AQP2", "SCNN1G", "GATA3"}},
      // Colon.
      {"enterocyte", Bit(kColon), 1.2, 1.2, false, {"CA1", "SLC26A3", "CEACAM7", "KRT20", "FABP1"}},
      {"goblet cell", Bit(kColon), 0.5, 1.3, false, {"MUC2", "TFF3", "SPINK4", "CLCA1"}},
      {"intestinal crypt stem cell",
       Bit(kColon),
       0.2,
       1.1,
       false,
       {"LGR5", "OLFM4", "ASCL2", "SMOC2"}},
      {"enteroendocrine cell", Bit(kColon), 0.04, 1.0, false, {"CHGA", "PYY", "GCG", "NEUROD1"}},
      // Stroma.
      {"fibroblast",
       Bit(kLung) | Bit(kKidney) | Bit(kColon),
       0.5,
       1.1,
       false,
       {"COL1A1", "COL1A2", "DCN", "LUM", "PDGFRA"}},
      {"endothelial cell", kSolid, 0.5, 1.0, false, {"PECAM1", "VWF", "CDH5", "CLDN5"}},
      {"smooth muscle cell",
       Bit(kLung) | Bit(kKidney) | Bit(kColon),
       0.2,
       1.0,
       false,
       {"ACTA2", "MYH11", "TAGLN", "DES"}},
      // Tumour.
      {"malignant cell",
       kSolid,
       1.5,
       1.6,
       true,
       {"EPCAM", "KRT8", "KRT18", "MKI67", "TOP2A", "CEACAM5"}},
  };
  return kTypes;
}

// A data table: the term id of each catalogue value. "type I/II pneumocyte" are CL
// synonyms of CL:0002062/CL:0002063 ("pulmonary alveolar type 1/2 cell"): a build with
// --ontology matches them by synonym.
const std::vector<std::pair<const char*, const char*>>& TermIds() {
  static const std::vector<std::pair<const char*, const char*>> kIds = {
      {"CD4-positive, alpha-beta T cell", "CL:0000624"},
      {"CD8-positive, alpha-beta T cell", "CL:0000625"},
      {"regulatory T cell", "CL:0000815"},
      {"natural killer cell", "CL:0000623"},
      {"B cell", "CL:0000236"},
      {"plasma cell", "CL:0000786"},
      {"classical monocyte", "CL:0000860"},
      {"non-classical monocyte", "CL:0000875"},
      {"conventional dendritic cell", "CL:0000990"},
      {"plasmacytoid dendritic cell", "CL:0000784"},
      {"mast cell", "CL:0000097"},
      {"neutrophil", "CL:0000775"},
      {"macrophage", "CL:0000235"},
      {"platelet", "CL:0000233"},
      {"erythrocyte", "CL:0000232"},
      {"alveolar macrophage", "CL:0000583"},
      {"type I pneumocyte", "CL:0002062"},
      {"type II pneumocyte", "CL:0002063"},
      {"ciliated cell", "CL:0000064"},
      {"club cell", "CL:0000158"},
      {"hepatocyte", "CL:0000182"},
      {"cholangiocyte", "CL:1000488"},
      {"Kupffer cell", "CL:0000091"},
      {"hepatic stellate cell", "CL:0000632"},
      {"kidney proximal convoluted tubule epithelial cell", "CL:1000838"},
      {"podocyte", "CL:0000653"},
      {"kidney loop of Henle thick ascending limb epithelial cell", "CL:1001106"},
      {"kidney collecting duct principal cell", "CL:1001431"},
      {"enterocyte", "CL:0000584"},
      {"goblet cell", "CL:0000160"},
      {"intestinal crypt stem cell", "CL:0002250"},
      {"enteroendocrine cell", "CL:0000164"},
      {"fibroblast", "CL:0000057"},
      {"endothelial cell", "CL:0000115"},
      {"smooth muscle cell", "CL:0000192"},
      {"malignant cell", "CL:0001064"},
      {"lung", "UBERON:0002048"},
      {"liver", "UBERON:0002107"},
      {"blood", "UBERON:0000178"},
      {"kidney", "UBERON:0002113"},
      {"colon", "UBERON:0001155"},
      {"lung adenocarcinoma", "MONDO:0005061"},
      {"hepatocellular carcinoma", "MONDO:0007256"},
      {"COVID-19", "MONDO:0100096"},
      {"clear cell renal carcinoma", "MONDO:0005005"},
      {"colorectal cancer", "MONDO:0005575"},
      {"normal", "PATO:0000461"},
  };
  return kIds;
}

const char* TermId(const std::string& value) {
  for (const auto& [name, id] : TermIds())
    if (value == name) return id;
  return nullptr;
}

const std::vector<const char*>& HousekeepingGenes() {
  static const std::vector<const char*> kGenes = {"MALAT1", "ACTB",    "GAPDH",  "B2M",    "TMSB4X",
                                                  "EEF1A1", "FTL",     "FTH1",   "RPL13",  "RPS27",
                                                  "RPLP0",  "TPT1",    "UBC",    "MT-CO1", "MT-ND1",
                                                  "MT-CO3", "MT-ATP6", "MT-ND4", "MT-CYB"};
  return kGenes;
}

const std::vector<const char*>& FemaleGenes() {
  static const std::vector<const char*> kGenes = {"XIST"};
  return kGenes;
}

const std::vector<const char*>& MaleGenes() {
  static const std::vector<const char*> kGenes = {"RPS4Y1", "DDX3Y", "UTY", "KDM5D", "EIF1AY"};
  return kGenes;
}

const std::vector<const char*>& InterferonGenes() {
  static const std::vector<const char*> kGenes = {"ISG15", "IFI6",  "IFI27", "MX1",
                                                  "IFIT1", "IFIT3", "OAS1",  "IFI44L"};
  return kGenes;
}

const std::vector<const char*>& TumourGenes() {
  static const std::vector<const char*> kGenes = {"SPP1", "MMP7",  "CXCL13",  "VEGFA",
                                                  "CA9",  "MMP11", "COL11A1", "IL1B"};
  return kGenes;
}

bool IsLncRna(const std::string& symbol) { return symbol == "MALAT1" || symbol == "XIST"; }

const std::vector<std::string>& KnownSymbols() {
  static const std::vector<std::string> kSymbols = [] {
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    auto add = [&](const char* s) {
      if (seen.insert(s).second) out.emplace_back(s);
    };
    for (const char* g : HousekeepingGenes()) add(g);
    for (const auto& t : CellTypes())
      for (const char* g : t.markers) add(g);
    for (const char* g : FemaleGenes()) add(g);
    for (const char* g : MaleGenes()) add(g);
    for (const char* g : InterferonGenes()) add(g);
    for (const char* g : TumourGenes()) add(g);
    return out;
  }();
  return kSymbols;
}

}  // namespace cellcube::synth
