// `cellcube query STORE --genes ...`: one query against a store, as a table, CSV or JSON.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cellcube/query.h"
#include "cellcube/render.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"

namespace cellcube::cli {

const char* const kQueryHelp =
    R"(usage: cellcube query STORE --genes G[,G...] [--by COL[,COL...]] [--where COL=VALUE]...
                      [--datasets D[,D...]] [--metrics M[,M...]] [--format table|csv|json]

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
  --metrics M,...     any of n_cells,nnz,frac,sum,mean,mean_expr,var,std
                      (default: n_cells,frac,mean)
  --format F          table (default; aligned, for reading), csv or json
  -h, --help          show this help

'dataset' and 'cell_type' are columns like the others in --by and --where; 'cellcube
info STORE' lists the columns and their values.

n_cells counts only cells of datasets that measured the gene; a (split, gene) with no
such cell gives no row. mean_expr is missing when nnz = 0, var and std when n_cells < 2.

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

namespace {

std::string TableNumber(double v) {
  char buf[32];
  if (std::fabs(v) >= 1e4 && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

void PrintTable(const QueryResult& r) {
  if (r.rows.empty()) {
    std::cout << "no rows\n";  // why: on stderr (RunQuery)
    return;
  }
  // Gene ids are often opaque (ENSG...): the table shows the symbols too, when known.
  bool symbols = false;
  for (size_t g = 0; g < r.genes.size(); ++g)
    symbols |= !r.symbols[g].empty() && r.symbols[g] != r.genes[g];
  std::vector<std::string> header = r.ColumnNames();
  if (symbols)
    header.insert(header.begin() + static_cast<std::ptrdiff_t>(r.by.size()) + 1, "symbol");
  TextTable t(header);
  std::vector<size_t> right;
  for (size_t i = 0; i < r.metrics.size(); ++i) right.push_back(r.by.size() + 1 + symbols + i);
  for (const auto& row : r.rows) {
    std::vector<std::string> cells;
    for (size_t c = 0; c < r.by.size(); ++c) cells.push_back(r.Label(row, c));
    cells.push_back(r.genes[static_cast<size_t>(row.gene)]);
    if (symbols) cells.push_back(r.symbols[static_cast<size_t>(row.gene)]);
    for (Metric m : r.metrics) {
      if (m == Metric::kNCells) {
        cells.push_back(WithThousands(row.stats.n_cells));
      } else if (m == Metric::kNnz) {
        cells.push_back(WithThousands(row.stats.nnz));
      } else {
        double v = row.Value(m);
        cells.push_back(std::isfinite(v) ? TableNumber(v) : "-");
      }
    }
    t.AddRow(std::move(cells));
  }
  t.Print(std::cout, right, "");
}

}  // namespace

Status RunQuery(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"genes", true, true},
                                                    {"by", true, true},
                                                    {"where", true, true},
                                                    {"datasets", true, true},
                                                    {"metrics", true, true},
                                                    {"format", true}}));
  if (args.positionals().size() != 1)
    return Status::Usage("query needs exactly one STORE (see 'cellcube query --help')");
  Query q;
  q.genes = ListOption(args, "genes");
  if (q.genes.empty()) return Status::Usage("query needs --genes G[,G...]");
  q.by = ListOption(args, "by");
  q.metrics = ListOption(args, "metrics");
  CC_ASSIGN_OR_RETURN(q.population, PopulationOptions(args));
  const std::string format = args.GetOr("format", "table");
  if (format != "table" && format != "csv" && format != "json")
    return Status::Usage("--format must be table, csv or json, not '" + format + "'");
  // Check the metric names before opening the store: a typo is reported at once.
  CC_RETURN_IF_ERROR(ParseMetrics(q.metrics).status());

  CC_ASSIGN_OR_RETURN(auto engine, QueryEngine::Open(args.positionals()[0]));
  CC_ASSIGN_OR_RETURN(QueryResult result, engine->Run(q));
  if (format == "csv") {
    std::cout << FormatCsv(result);
  } else if (format == "json") {
    std::cout << FormatJson(result);
  } else {
    PrintTable(result);
  }
  for (const auto& note : result.notes) std::cerr << "cellcube: " << note << "\n";
  std::cout.flush();
  if (!std::cout) return Status::IoError("cannot write the output");
  return Status::Ok();
}

}  // namespace cellcube::cli
