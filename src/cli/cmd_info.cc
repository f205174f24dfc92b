// `cellcube info STORE`: what a store holds.
#include <sys/stat.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cellcube/store_data.h"
#include "cellcube/store_reader.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "ontology/term_tree_json.h"
#include "util/text.h"

namespace cellcube::cli {

const char* const kInfoHelp =
    "usage: cellcube info STORE [--json] [--check]\n\n"
    "Shows a store's datasets (cells, groups, genes, transform, values above the\n"
    "histograms' upper edge H, columns used; then each one's source file), its columns\n"
    "with their values and cell counts, its histograms' layout and its size on disk.\n"
    "Reads the metadata only, so it takes milliseconds whatever the store's size.\n\n"
    "  --json    print as JSON\n"
    "  --check   also check every stored entry (reads the whole store; queries check the\n"
    "            entries they read, so this is for finding damage before a query does)\n";

namespace {

using nlohmann::json;

// Cells per value of each column.
std::vector<std::vector<int64_t>> CellsPerValue(const StoreData& s) {
  std::vector<std::vector<int64_t>> out;
  for (size_t c = 0; c < s.columns.size(); ++c) {
    std::vector<int64_t> counts(s.labels[c].size() + 1, 0);  // last: NA
    for (int64_t g = 0; g < s.n_groups(); ++g) {
      int32_t code = s.codes[c][g];
      counts[code < 0 ? counts.size() - 1 : static_cast<size_t>(code)] += s.n_cells[g];
    }
    out.push_back(std::move(counts));
  }
  return out;
}

}  // namespace

namespace {

// What info shows, read once for both forms.
struct InfoFacts {
  std::string path, version;
  int64_t size = 0, cells = 0, n_entries = 0, n_genes = 0;
  double per_entry = 0;
  std::vector<std::vector<int64_t>> counts;  // CellsPerValue: per column, label, then NA
};

// Whether the dataset's values go below 0: true, false, or null when the store was
// built before cellcube recorded it.
json NegativeValuesJson(NegativeValues v) {
  return v == NegativeValues::kUnknown ? json(nullptr) : json(v == NegativeValues::kSome);
}
std::string NegativeValuesText(NegativeValues v) {
  return v == NegativeValues::kUnknown ? "not recorded" : v == NegativeValues::kSome ? "yes" : "no";
}

// The histograms' layout (docs/FORMAT.md "Histograms"), or why the store has none.
json HistogramsJson(const StoreData& s) {
  if (!s.has_histograms()) return nullptr;
  return {{"bins", 64}, {"max", s.hist_max}};
}
std::string HistogramsText(const StoreData& s, const std::string& version) {
  char edge[32];
  std::snprintf(edge, sizeof edge, "%.5g", s.hist_max);
  if (s.has_histograms()) return std::string("64 bins over (0, ") + edge + "]";
  return "none (" +
         (version == "1" || version == "2" ? "format " + version
                                           : std::string("built with --no-histograms, or from a "
                                                         "store of an older format")) +
         ": rebuild it with 'cellcube build' for medians, quartiles and violins)";
}

// Values counted above the histograms' upper edge; null (-) when not binned.
json AboveJson(int64_t v) { return v < 0 ? json(nullptr) : json(v); }
std::string AboveText(int64_t v) { return v < 0 ? "-" : WithThousands(v); }

// "  ontologies: cell_type: CL v2026-03-26, tissue: UBERON v2026-04-01 (412 terms
// embedded, ...)" wrapped at 100 columns, or why there are none (docs/ONTOLOGY.md).
std::string OntologiesText(const StoreData& s) {
  const StoreOntologies& o = s.ontology;
  const std::string lead = "  ontologies:";
  if (o.empty()) return lead + " none (built without --ontology)\n";
  std::vector<std::string> items;
  for (size_t k = 0; k < o.columns.size(); ++k) {
    const auto& source = o.ontologies[static_cast<size_t>(o.column_ontology[k])];
    items.push_back(o.columns[k] + ": " + source.name +
                    (source.version.empty() ? "" : " " + source.version));
  }
  items.back() += " (" + WithThousands(o.n_terms()) + " terms embedded, with their ancestors)";
  return WrapList(items, lead, "      ");
}

// The backed columns, their ontology and version, and the term tree (each embedded term
// with its label and parents, its nearest ancestors).
json OntologyJson(const StoreData& s) {
  const StoreOntologies& o = s.ontology;
  json columns = json::array();
  for (size_t k = 0; k < o.columns.size(); ++k) {
    const auto& source = o.ontologies[static_cast<size_t>(o.column_ontology[k])];
    columns.push_back({{"column", o.columns[k]},
                       {"ontology", source.name},
                       {"version", source.version.empty() ? json(nullptr) : json(source.version)}});
  }
  return {{"columns", columns}, {"terms", ontology::TermTreeJson(o)}};
}

json InfoJson(const StoreData& s, const InfoFacts& f) {
  json datasets = json::array();
  for (const auto& d : s.datasets)
    datasets.push_back({{"name", d.name},
                        {"source", d.source},
                        {"source_size", d.source_size},
                        {"source_mtime", d.source_mtime},
                        {"n_cells", d.n_cells},
                        {"n_groups", d.n_groups},
                        {"n_genes", d.n_genes},
                        {"matrix", d.matrix},
                        {"transform", d.transform},
                        {"cell_type_column", d.cell_type_column},
                        {"groupby", d.groupby},
                        {"gene_symbols_column", d.gene_symbols_column},
                        {"donor_column", d.donor_column},
                        {"negative_values", NegativeValuesJson(d.negative_values)},
                        {"values_above_hist_max", AboveJson(d.values_above_hist_max)}});
  json columns = json::array();
  for (size_t c = 0; c < s.columns.size(); ++c) {
    json values = json::array();
    for (size_t l = 0; l < s.labels[c].size(); ++l)
      values.push_back({{"value", s.labels[c][l]}, {"n_cells", f.counts[c][l]}});
    if (f.counts[c].back()) values.push_back({{"value", "NA"}, {"n_cells", f.counts[c].back()}});
    columns.push_back({{"name", s.columns[c]}, {"values", values}});
  }
  return {{"path", f.path},
          {"format_version", f.version},
          {"size_bytes", f.size},
          {"n_datasets", s.datasets.size()},
          {"n_cells", f.cells},
          {"n_groups", s.n_groups()},
          {"n_genes", f.n_genes},
          {"n_entries", f.n_entries},
          {"bytes_per_entry", f.per_entry},
          {"histograms", HistogramsJson(s)},
          {"ontology", s.ontology.empty() ? json(nullptr) : OntologyJson(s)},
          {"datasets", datasets},
          {"columns", columns}};
}

void PrintInfo(const StoreData& s, const InfoFacts& f) {
  std::printf("%s: cellcube store (format %s), %s on disk\n", f.path.c_str(), f.version.c_str(),
              FormatBytes(static_cast<uint64_t>(f.size)).c_str());
  std::printf(
      "  %zu datasets, %s cells in %s groups, %s genes\n"
      "  %s stored (group, gene) entries, %.1f bytes per entry\n",
      s.datasets.size(), WithThousands(f.cells).c_str(), WithThousands(s.n_groups()).c_str(),
      WithThousands(f.n_genes).c_str(), WithThousands(f.n_entries).c_str(), f.per_entry);
  std::printf("  histograms: %s\n", HistogramsText(s, f.version).c_str());
  std::cout << OntologiesText(s) << "\n";
  // Two narrow tables and a list of sources rather than one table: with the columns
  // used and the source path in it, every row was 250 characters wide.
  TextTable sizes(
      {"dataset", "cells", "groups", "genes", "transform", "values < 0", "above H", "matrix"});
  TextTable used({"dataset", "cell type column", "symbols column", "group-by"});
  for (const auto& d : s.datasets) {
    sizes.AddRow({d.name, WithThousands(d.n_cells), WithThousands(d.n_groups),
                  WithThousands(d.n_genes), d.transform, NegativeValuesText(d.negative_values),
                  AboveText(d.values_above_hist_max), d.matrix});
    used.AddRow({d.name, d.cell_type_column,
                 d.gene_symbols_column.empty() ? "-" : d.gene_symbols_column,
                 d.groupby.empty() ? "-" : Join(d.groupby)});
  }
  sizes.Print(std::cout, {1, 2, 3, 6});
  std::cout << "\n";
  used.Print(std::cout);
  std::cout << "\nsources\n";
  for (const auto& d : s.datasets) std::cout << "  " << d.name << ": " << d.source << "\n";
  std::cout << "\ncolumns\n";
  // One list per column, wrapped at 100 characters (a column's 12 values used to make
  // one line of hundreds).
  for (size_t c = 0; c < s.columns.size(); ++c) {
    std::vector<std::string> items;
    for (size_t l = 0; l < s.labels[c].size(); ++l) {
      if (l == 12) {
        items.push_back("...");
        break;
      }
      items.push_back(s.labels[c][l] + " [" + WithThousands(f.counts[c][l]) + "]");
    }
    if (f.counts[c].back()) items.push_back("NA [" + WithThousands(f.counts[c].back()) + "]");
    std::cout << WrapList(
        items, "  " + s.columns[c] + " (" + std::to_string(s.labels[c].size()) + "):", "      ");
  }
}

}  // namespace

Status RunInfo(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"json", false}, {"check", false}}));
  if (args.positionals().size() != 1) return Status::Usage("info needs exactly one STORE");
  const std::string& path = args.positionals()[0];
  CC_ASSIGN_OR_RETURN(StoreMetadata loaded, ReadStoreMetadata(path));
  if (args.Flag("check")) {
    CC_ASSIGN_OR_RETURN(auto reader, StoreReader::Open(path));
    CC_RETURN_IF_ERROR(reader->CheckAllGenes());
    std::fprintf(stderr, "checked all %s entries: no damage found\n",
                 WithThousands(reader->n_entries()).c_str());
  }
  const StoreData& s = loaded.meta;
  InfoFacts f;
  f.path = path;
  f.version = std::to_string(loaded.format_version);
  struct stat st {};
  ::stat(path.c_str(), &st);
  f.size = static_cast<int64_t>(st.st_size);
  f.n_entries = loaded.n_entries;
  f.n_genes = loaded.n_genes;
  f.per_entry = f.n_entries ? static_cast<double>(f.size) / static_cast<double>(f.n_entries) : 0;
  f.counts = CellsPerValue(s);
  for (const auto& d : s.datasets) f.cells += d.n_cells;
  if (args.Flag("json"))
    std::cout << InfoJson(s, f).dump(2) << "\n";
  else
    PrintInfo(s, f);
  return Status::Ok();
}

}  // namespace cellcube::cli
