// `cellcube query STORE --genes ...`: one query against a store, as a table, CSV or JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cellcube/query.h"
#include "cellcube/render.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "util/text.h"

namespace cellcube::cli {

const char* const kQueryHelp =
    R"(usage: cellcube query STORE --genes G[,G...] [--by COL[,COL...]] [--where COL=VALUE]...
                      [--datasets D[,D...]] [--rollup COL]... [--metrics M[,M...]]
                      [--format table|csv|json]

Answers, for the genes asked, over the cells of the selected groups split by the
--by columns: how many cells (n_cells), how many express the gene (nnz), the fraction
(frac), the sum, the mean (zeros included), the mean among expressing cells
(mean_expr), the sample variance (var, ddof = 1) and standard deviation (std) of the
values the store aggregated (see 'cellcube info STORE' for each dataset's transform).

  --genes G,...       gene ids or symbols, case-insensitive (a symbol shared by several
                      ids answers each id); required
  --by COL,...        columns to split by, e.g. cell_type or dataset,cell_type; splits
                      come in each column's value order, NA (missing) last
  --where COL=VALUE   keep the groups whose COL is VALUE; split at the first '=', VALUE
                      taken literally (it may contain ',' or '='); NA selects missing
                      values. Repeat it: values of one column are OR-ed, different
                      columns AND-ed (--where stage=II --where stage=III --where sex=female)
  --datasets D,...    only these datasets (default: all)
  --rollup COL        COL's ontology terms stand for their whole subtree: --where COL=T
                      selects T and every subtype; --by COL gives one row per term and
                      its ancestors, in tree order, with a depth column (docs/ONTOLOGY.md;
                      COL must be built with --ontology). Repeatable
  --metrics M,...     any of n_cells,nnz,frac,sum,mean,mean_expr,var,std, and from
                      the store's histograms median,q05,q25,q75,q95,median_expr,max
                      (default: n_cells,frac,mean)
  --format F          table (default; aligned, for reading), csv or json
  -h, --help          show this help

'dataset' and 'cell_type' are columns like the others in --by and --where; 'cellcube
info STORE' lists the columns and their values.

n_cells counts only cells of datasets that measured the gene; a (split, gene) with no
such cell gives no row. mean_expr is missing when nnz = 0, var and std when n_cells < 2.
median and qNN are quantiles over all cells (zeros included), median_expr over the
expressing cells (missing when nnz = 0), max the upper edge of the highest non-empty
bin; each is within one bin width (the store's upper edge / 64) of the quantile of the
cells' values (see 'cellcube distribution --help').

Output columns: the --by columns in the order given, then gene (the store's gene id),
then the metrics in the order given.
  csv    RFC 4180 quoting, one header line; a missing value is an empty field.
  json   an array of row objects whose keys are those columns, in that order; labels
         and gene are strings, n_cells and nnz integers, the other metrics numbers,
         a missing value null:
           [{"cell_type": "T cell", "gene": "ENSG00000010610", "n_cells": 812,
             "frac": 0.43, "mean": 1.27}, ...]
  table  the same columns aligned (with the genes' symbols after gene, when known);
         a missing value is '-'.
)";

const char* const kDistributionHelp =
    R"(usage: cellcube distribution STORE --genes G[,G...] [--by COL[,COL...]]
                             [--where COL=VALUE]... [--datasets D[,D...]]
                             [--rollup COL]... [--format table|csv|json]

The distribution of each gene's values per split, from the store's histograms: for
violin and box plots. One row per (split, gene) with cells: n_cells, zeros (the cells
without a value above 0), and the expressing cells counted in 64 equal bins over
(0, H], H the store's upper edge ('cellcube info' shows it; ln 10001 = 9.2104 by
default, the largest cp10k_log1p value). Bin i holds the values v with
i*H/64 < v <= (i+1)*H/64; values above H are in the last bin.

  --genes, --by, --where, --datasets, --rollup   as for 'cellcube query'
  --format F          table (default: the counts, median, q25, q75, median_expr and a
                      line of the bins), csv (columns: the --by columns, gene,
                      n_cells, zeros, bin_00 ... bin_63) or json ({"columns", "edges":
                      [65 bin edges], "rows": [{..., "n_cells", "zeros", "bins": [64
                      counts]}], "notes"})
  -h, --help          show this help

A row holding cells of a dataset whose values go below 0 (scaled data) has no
distribution: empty zeros and bins (null in JSON), with a note. A store built with
--no-histograms, or by a cellcube before histograms, has none: rebuild it.
)";

namespace {

std::string TableNumber(double v) {
  char buf[32];
  if (std::fabs(v) >= 1e4 && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Gene ids are often opaque (ENSG...): tables show the symbols too, when known.
bool HasSymbols(const QueryResult& r) {
  for (size_t g = 0; g < r.genes.size(); ++g)
    if (!r.symbols[g].empty() && r.symbols[g] != r.genes[g]) return true;
  return false;
}

// A row's by-columns as table cells: a rolled-up column's label indented by its depth,
// then the depth (docs/ONTOLOGY.md).
void AppendSplitCells(const QueryResult& r, const QueryResult::Row& row,
                      std::vector<std::string>* cells) {
  for (size_t c = 0; c < r.by.size(); ++c) {
    if (!r.by_rolled[c]) {
      cells->push_back(r.Label(row, c));
      continue;
    }
    const int32_t depth = r.Depth(row.split, c);
    cells->push_back(std::string(2 * static_cast<size_t>(depth), ' ') + r.Label(row, c));
    cells->push_back(std::to_string(depth));
  }
}

// The by-columns' header (each rolled-up one followed by its depth column).
std::vector<std::string> SplitHeader(const QueryResult& r) {
  std::vector<std::string> names = r.ColumnNames();
  names.resize(names.size() - r.metrics.size() - 1);
  return names;
}

void PrintTable(const QueryResult& r) {
  if (r.rows.empty()) {
    std::cout << "no rows\n";  // why: on stderr (RunQuery)
    return;
  }
  const bool symbols = HasSymbols(r);
  std::vector<std::string> header = r.ColumnNames();
  const size_t n_split = SplitHeader(r).size();
  if (symbols) header.insert(header.begin() + static_cast<std::ptrdiff_t>(n_split) + 1, "symbol");
  TextTable t(header);
  std::vector<size_t> right;
  for (size_t i = 0; i < r.metrics.size(); ++i) right.push_back(n_split + 1 + symbols + i);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    std::vector<std::string> cells;
    AppendSplitCells(r, row, &cells);
    cells.push_back(r.genes[static_cast<size_t>(row.gene)]);
    if (symbols) cells.push_back(r.symbols[static_cast<size_t>(row.gene)]);
    for (Metric m : r.metrics) {
      if (m == Metric::kNCells) {
        cells.push_back(WithThousands(row.stats.n_cells));
      } else if (m == Metric::kNnz) {
        cells.push_back(WithThousands(row.stats.nnz));
      } else {
        double v = r.Value(i, m);
        cells.push_back(std::isfinite(v) ? TableNumber(v) : "-");
      }
    }
    t.AddRow(std::move(cells));
  }
  t.Print(std::cout, right, "");
}

// The query both commands parse (`command` names them in errors).
Result<Query> ParseQuery(const std::vector<std::string>& argv, const std::string& command,
                         bool metrics, Args* args_out, std::string* format) {
  std::vector<OptionSpec> specs = {{"genes", true, true},  {"by", true, true},
                                   {"where", true, true},  {"datasets", true, true},
                                   {"rollup", true, true}, {"format", true}};
  if (metrics) specs.push_back({"metrics", true, true});
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, specs));
  if (args.positionals().size() != 1)
    return Status::Usage(command + " needs exactly one STORE (see 'cellcube " + command +
                         " --help')");
  Query q;
  q.genes = ListOption(args, "genes");
  if (q.genes.empty()) return Status::Usage(command + " needs --genes G[,G...]");
  q.by = ListOption(args, "by");
  if (metrics) q.metrics = ListOption(args, "metrics");
  CC_ASSIGN_OR_RETURN(q.population, PopulationOptions(args));
  *format = args.GetOr("format", "table");
  if (*format != "table" && *format != "csv" && *format != "json")
    return Status::Usage("--format must be table, csv or json, not '" + *format + "'");
  // Check the metric names before opening the store: a typo is reported at once.
  CC_RETURN_IF_ERROR(ParseMetrics(q.metrics).status());
  *args_out = std::move(args);
  return q;
}

// The genes some selected dataset did not measure (its cells are not counted for them),
// one line each, as the page marks them with '*' and the API lists not_measured_in.
void NoteNotMeasured(const StoreReader& store, const QueryResult& result) {
  if (result.rows.empty()) return;
  for (size_t g = 0; g < result.gene_indices.size(); ++g) {
    std::vector<std::string> missing;
    for (int32_t d : result.datasets)
      if (!store.Measured(d, result.gene_indices[g]))
        missing.push_back(store.meta().datasets[static_cast<size_t>(d)].name);
    if (missing.empty()) continue;
    const std::string& name = result.symbols[g].empty() ? result.genes[g] : result.symbols[g];
    std::cerr << "cellcube: " << name << " was not measured in " << missing.size()
              << (missing.size() == 1 ? " selected dataset (" : " selected datasets (")
              << QuoteList(missing, 10) << "): their cells are not counted for it\n";
  }
}

Status Finish(const QueryResult& result) {
  for (const auto& note : result.notes) std::cerr << "cellcube: " << note << "\n";
  std::cout.flush();
  if (!std::cout) return Status::IoError("cannot write the output");
  return Status::Ok();
}

// A row's bins as a line of block characters, two bins per character, each character's
// height relative to the row's fullest pair.
std::string Sparkline(const Bins& bins) {
  static const char* const kBlocks[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  uint64_t top = 0;
  for (size_t b = 0; b < bins.size(); b += 2) top = std::max(top, bins[b] + bins[b + 1]);
  std::string out;
  for (size_t b = 0; b < bins.size(); b += 2) {
    const uint64_t pair = bins[b] + bins[b + 1];
    const auto level = top == 0 ? 0 : static_cast<size_t>((pair * 8 + top - 1) / top);
    out += kBlocks[level];
  }
  return out;
}

void PrintDistributionTable(const QueryResult& r) {
  if (r.rows.empty()) {
    std::cout << "no rows\n";
    return;
  }
  const bool symbols = HasSymbols(r);
  std::vector<std::string> header = SplitHeader(r);
  char edge[64];
  std::snprintf(edge, sizeof edge, "expressing cells over (0, %.4g]", r.hist_max);
  header.emplace_back("gene");
  if (symbols) header.emplace_back("symbol");
  for (const char* c : {"n_cells", "zeros", "median", "q25", "q75", "median_expr"})
    header.emplace_back(c);
  header.emplace_back(edge);
  TextTable t(header);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    std::vector<std::string> cells;
    AppendSplitCells(r, row, &cells);
    cells.push_back(r.genes[static_cast<size_t>(row.gene)]);
    if (symbols) cells.push_back(r.symbols[static_cast<size_t>(row.gene)]);
    cells.push_back(WithThousands(row.stats.n_cells));
    const bool known = r.HasDistribution(i);
    cells.push_back(known ? WithThousands(row.stats.n_cells - row.stats.nnz) : "-");
    for (Metric m : {Metric::kMedian, Metric::kQ25, Metric::kQ75, Metric::kMedianExpr}) {
      const double v = r.Value(i, m);
      cells.push_back(std::isfinite(v) ? TableNumber(v) : "-");
    }
    cells.push_back(known ? Sparkline(r.bins[i]) : "-");
    t.AddRow(std::move(cells));
  }
  std::vector<size_t> right;
  const size_t first = SplitHeader(r).size() + (symbols ? 2 : 1);  // n_cells
  for (size_t c = first; c < first + 6; ++c) right.push_back(c);
  t.Print(std::cout, right, "");
}

}  // namespace

namespace {

// How one command prints its answer in each --format.
struct Printers {
  std::string (*csv)(const QueryResult&);
  std::string (*json)(const QueryResult&);
  void (*table)(const QueryResult&);
};

// Parses, runs and prints `command`'s query (a distribution when `distribution`), then
// its notes on stderr.
Status Answer(const std::vector<std::string>& argv, const std::string& command, bool distribution,
              const Printers& print) {
  Args args;
  std::string format;
  CC_ASSIGN_OR_RETURN(Query q, ParseQuery(argv, command, !distribution, &args, &format));
  if (distribution) {
    q.distribution = true;
    q.metrics = {"n_cells"};
  }
  CC_ASSIGN_OR_RETURN(auto engine, QueryEngine::Open(args.positionals()[0]));
  CC_ASSIGN_OR_RETURN(QueryResult result, engine->Run(q));
  if (format == "csv")
    std::cout << print.csv(result);
  else if (format == "json")
    std::cout << print.json(result);
  else
    print.table(result);
  NoteNotMeasured(engine->store(), result);
  return Finish(result);
}

}  // namespace

Status RunQuery(const std::vector<std::string>& argv) {
  return Answer(argv, "query", false, {FormatCsv, FormatJson, PrintTable});
}

Status RunDistribution(const std::vector<std::string>& argv) {
  return Answer(argv, "distribution", true,
                {FormatDistributionCsv, FormatDistributionJson, PrintDistributionTable});
}

}  // namespace cellcube::cli
