// `cellcube inspect FILE`: what an .h5ad file holds, read from its metadata.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "util/text.h"

namespace cellcube::cli {

const char* const kInspectHelp =
    R"(usage: cellcube inspect FILE.h5ad [--json] [--column NAME] [--check]

Shows what an AnnData file holds: cells and genes; every matrix (X, raw/X, layers)
with its encoding, value type, shape, stored values, chunking and compression; the
obs and var columns with their kind and number of distinct values; the cell-type
column build takes by default, and the categorical obs columns to choose one from.

  --json          print the description as JSON
  --column NAME   list the values of obs column NAME with their cell counts
  --check         also read every matrix in full, checking its structure and counting
                  values that are not finite (NaN, inf)
  -h, --help      show this help
)";

namespace {

using h5ad::Column;
using h5ad::File;
using nlohmann::json;

struct ColumnSummary {
  std::string name;
  std::string kind;
  int64_t n_values = 0;
  int64_t n_missing = 0;
};

Result<std::vector<ColumnSummary>> SummariseColumns(const File& file, bool obs) {
  CC_ASSIGN_OR_RETURN(auto info, obs ? file.ObsInfo() : file.VarInfo());
  std::vector<ColumnSummary> out;
  for (const auto& name : info.column_names) {
    CC_ASSIGN_OR_RETURN(Column col, obs ? file.ReadObsColumn(name) : file.ReadVarColumn(name));
    out.push_back(
        {name, h5ad::ColumnKindName(col.kind), col.CountDistinctPresent(), col.CountMissing()});
  }
  return out;
}

std::string ShapeText(const std::vector<int64_t>& dims) {
  if (dims.empty()) return "-";
  std::string out;
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? " x " : "") + std::to_string(dims[i]);
  return out;
}

struct CheckResult {
  int64_t values = 0;
  int64_t non_finite = 0;
};

// Streams a whole matrix; the stream validates its structure block by block.
Result<CheckResult> CheckMatrix(const File& file, const std::string& path) {
  CC_ASSIGN_OR_RETURN(auto stream, file.StreamMatrix(path));
  CheckResult r;
  h5ad::SparseBlock block;
  while (true) {
    CC_ASSIGN_OR_RETURN(bool more, stream->Next(&block));
    if (!more) break;
    r.values += static_cast<int64_t>(block.values.size());
    for (double v : block.values) r.non_finite += !std::isfinite(v);
  }
  return r;
}

json ColumnsJson(const std::vector<ColumnSummary>& cols) {
  json out = json::array();
  for (const auto& c : cols)
    out.push_back(
        {{"name", c.name}, {"kind", c.kind}, {"n_values", c.n_values}, {"n_missing", c.n_missing}});
  return out;
}

void PrintColumns(const char* title, const std::vector<ColumnSummary>& cols) {
  std::cout << "\n" << title << " columns (" << cols.size() << ")\n";
  if (cols.empty()) return;
  TextTable t({"name", "kind", "values", "missing"});
  for (const auto& c : cols)
    t.AddRow({c.name, c.kind, std::to_string(c.n_values), std::to_string(c.n_missing)});
  t.Print(std::cout, {2, 3});
}

Status PrintColumnValues(const File& file, const std::string& name, bool as_json) {
  CC_ASSIGN_OR_RETURN(Column col, file.ReadObsColumn(name));
  std::vector<int64_t> counts(col.labels.size(), 0);
  for (int32_t c : col.codes)
    if (c >= 0) ++counts[static_cast<size_t>(c)];
  int64_t missing = col.CountMissing();
  if (as_json) {
    json values = json::array();
    for (size_t i = 0; i < col.labels.size(); ++i)
      values.push_back({{"value", col.labels[i]}, {"cells", counts[i]}});
    std::cout << json{{"name", col.name},
                      {"kind", h5ad::ColumnKindName(col.kind)},
                      {"values", values},
                      {"missing", missing},
                      {"ordered", col.ordered}}
                     .dump(2)
              << "\n";
    return Status::Ok();
  }
  std::cout << "obs column '" << col.name << "' (" << h5ad::ColumnKindName(col.kind)
            << (col.ordered ? ", ordered" : "") << "): " << col.CountDistinctPresent()
            << " distinct values\n";
  TextTable t({"value", "cells"});
  for (size_t i = 0; i < col.labels.size(); ++i)
    t.AddRow({col.labels[i], WithThousands(counts[i])});
  if (missing) t.AddRow({"NA (missing)", WithThousands(missing)});
  t.Print(std::cout, {1});
  return Status::Ok();
}

// What `build` would take as gene names: the var index of the matrix `--matrix auto`
// picks, and the symbol column it would use by default, with the first few of each.
struct InspectedGenes {
  std::string matrix;  // "" when the file has no matrix
  std::vector<std::string> first_ids;
  std::string symbol_column;  // "" when none of the defaults is there
  std::vector<std::string> first_symbols;
};

constexpr size_t kFirstNames = 5;

Result<InspectedGenes> GeneNamesOf(const File& file) {
  InspectedGenes out;
  auto matrix = file.ResolveMatrix("auto");
  if (!matrix.ok()) return out;  // no matrix: nothing to name
  out.matrix = matrix->path;
  CC_ASSIGN_OR_RETURN(auto ids, file.ReadVarIndex(out.matrix));
  ids.resize(std::min(ids.size(), kFirstNames));
  out.first_ids = std::move(ids);
  CC_ASSIGN_OR_RETURN(auto var, file.VarInfo(out.matrix));
  for (const auto& c : DefaultGeneSymbolColumns())
    if (std::find(var.column_names.begin(), var.column_names.end(), c) != var.column_names.end()) {
      out.symbol_column = c;
      break;
    }
  if (out.symbol_column.empty()) return out;
  CC_ASSIGN_OR_RETURN(Column col, file.ReadVarColumn(out.symbol_column, out.matrix));
  for (size_t g = 0; g < col.codes.size() && g < kFirstNames; ++g)
    out.first_symbols.push_back(col.codes[g] >= 0 ? col.labels[static_cast<size_t>(col.codes[g])]
                                                  : std::string());
  return out;
}

void PrintGeneNames(const InspectedGenes& g, int64_t n_vars) {
  if (g.matrix.empty()) return;
  auto list = [](const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + (n.empty() ? "-" : n);
    return out;
  };
  std::cout << "\ngenes (the var names of " << g.matrix << ", which build reads by default)\n"
            << "  ids:     " << list(g.first_ids)
            << (n_vars > static_cast<int64_t>(g.first_ids.size()) ? ", ..." : "") << "\n";
  if (g.symbol_column.empty())
    std::cout << "  symbols: none (no var column " << QuoteList(DefaultGeneSymbolColumns())
              << ";\n           build --gene-symbols COL names one)\n";
  else
    std::cout << "  symbols: " << list(g.first_symbols) << ", ... (var column '" << g.symbol_column
              << "', build's default)\n";
}

// Everything inspect reports about a file, read before anything is printed (so that an
// error leaves no partial description behind).
struct Inspection {
  std::vector<std::pair<std::string, CheckResult>> checks;  // (matrix path, result), --check
  std::vector<ColumnSummary> obs_cols, var_cols;
  h5ad::DataFrameInfo obs_info, var_info;
  InspectedGenes genes;
  int64_t size_bytes = 0;
};

Result<Inspection> Inspect(const File& file, const std::string& path, bool check) {
  Inspection in;
  // Opening every stream validates each sparse matrix's indptr (cheap: one entry a row).
  for (const auto& m : file.matrices()) {
    CC_ASSIGN_OR_RETURN(auto stream, file.StreamMatrix(m.path));
    (void)stream;
  }
  if (check) {
    for (const auto& m : file.matrices()) {
      CC_ASSIGN_OR_RETURN(CheckResult r, CheckMatrix(file, m.path));
      in.checks.emplace_back(m.path, r);
    }
  }
  CC_ASSIGN_OR_RETURN(in.obs_cols, SummariseColumns(file, true));
  CC_ASSIGN_OR_RETURN(in.var_cols, SummariseColumns(file, false));
  CC_ASSIGN_OR_RETURN(in.obs_info, file.ObsInfo());
  CC_ASSIGN_OR_RETURN(in.var_info, file.VarInfo());
  CC_ASSIGN_OR_RETURN(in.genes, GeneNamesOf(file));
  struct stat st {};
  ::stat(path.c_str(), &st);
  in.size_bytes = static_cast<int64_t>(st.st_size);
  return in;
}

json MatricesJson(const File& file, const Inspection& in) {
  json matrices = json::array();
  for (const auto& m : file.matrices()) {
    json jm = {{"path", m.path},
               {"encoding", h5ad::EncodingName(m.encoding)},
               {"dtype", m.dtype},
               {"shape", {m.n_rows, m.n_cols}},
               {"stored", m.stored},
               {"chunks", m.chunks.empty() ? json(nullptr) : json(m.chunks)},
               {"filter", m.filter},
               {"index_dtype", m.index_dtype.empty() ? json(nullptr) : json(m.index_dtype)}};
    for (const auto& [p, r] : in.checks)
      if (p == m.path) jm["check"] = {{"values", r.values}, {"non_finite", r.non_finite}};
    matrices.push_back(jm);
  }
  return matrices;
}

json GenesJson(const InspectedGenes& genes) {
  return {
      {"matrix", genes.matrix.empty() ? json(nullptr) : json(genes.matrix)},
      {"first_ids", genes.first_ids},
      {"symbol_column", genes.symbol_column.empty() ? json(nullptr) : json(genes.symbol_column)},
      {"first_symbols", genes.first_symbols}};
}

void PrintJson(const File& file, const std::string& path, const Inspection& in) {
  json out = {{"path", path},
              {"layout", file.layout()},
              {"size_bytes", in.size_bytes},
              {"n_obs", file.n_obs()},
              {"n_vars", file.n_vars()},
              {"obs_index", in.obs_info.index_name},
              {"var_index", in.var_info.index_name},
              {"matrices", MatricesJson(file, in)},
              {"obs", ColumnsJson(in.obs_cols)},
              {"var", ColumnsJson(in.var_cols)},
              {"genes", GenesJson(in.genes)}};
  std::cout << out.dump(2) << "\n";
}

void PrintMatrices(const File& file, const Inspection& in) {
  std::cout << "\nmatrices (" << file.matrices().size() << ")\n";
  if (file.matrices().empty()) {
    std::cout << "  none: this file stores no X, raw/X or layers\n";
  } else {
    TextTable t({"path", "encoding", "dtype", "shape", "stored", "chunks", "filter", "index"});
    for (const auto& m : file.matrices())
      t.AddRow({m.path, h5ad::EncodingName(m.encoding), m.dtype, ShapeText({m.n_rows, m.n_cols}),
                WithThousands(m.stored), ShapeText(m.chunks), m.filter,
                m.index_dtype.empty() ? "-" : m.index_dtype});
    t.Print(std::cout, {4});
  }
  for (const auto& [p, r] : in.checks)
    std::cout << "  checked " << p << ": " << WithThousands(r.values) << " values read, "
              << (r.non_finite ? WithThousands(r.non_finite) + " not finite (NaN or inf)"
                               : std::string("all finite"))
              << "\n";
}

// Which obs column build takes as the cell type by default (docs/BUILD.md), and the
// categorical ones to choose from with --cell-type: what a new user must decide first.
void PrintCellTypeChoice(const std::vector<ColumnSummary>& obs) {
  std::string chosen;
  for (const auto& c : DefaultCellTypeColumns())
    for (const auto& col : obs)
      if (chosen.empty() && col.name == c) chosen = c;
  std::vector<std::string> categorical;
  for (const auto& col : obs)
    if (col.kind == "categorical") categorical.push_back(col.name);
  std::cout << "\ncell types\n"
            << (chosen.empty()
                    ? "  build's default: none of its default columns is in obs; "
                      "build needs --cell-type COL\n"
                    : "  build's default: obs '" + chosen + "' (--cell-type COL picks another)\n");
  if (!categorical.empty())
    std::cout << WrapList(categorical, "  categorical obs columns:", "    ");
}

void PrintText(const File& file, const std::string& path, const Inspection& in) {
  std::cout << path << "\n  " << file.layout() << ", " << FormatBytes(in.size_bytes) << "; "
            << WithThousands(file.n_obs()) << " cells (obs) x " << WithThousands(file.n_vars())
            << " genes (var)\n";
  PrintMatrices(file, in);
  PrintColumns("obs", in.obs_cols);
  PrintColumns("var", in.var_cols);
  PrintCellTypeChoice(in.obs_cols);
  PrintGeneNames(in.genes, file.n_vars());
}

}  // namespace

Status RunInspect(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args,
                      Args::Parse(argv, {{"json", false}, {"column", true}, {"check", false}}));
  if (args.positionals().size() != 1)
    return Status::Usage("inspect needs exactly one FILE.h5ad (see 'cellcube inspect --help')");
  const std::string& path = args.positionals()[0];
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  if (auto column = args.Get("column")) return PrintColumnValues(*file, *column, args.Flag("json"));
  CC_ASSIGN_OR_RETURN(const Inspection in, Inspect(*file, path, args.Flag("check")));
  if (args.Flag("json"))
    PrintJson(*file, path, in);
  else
    PrintText(*file, path, in);
  return Status::Ok();
}

}  // namespace cellcube::cli
