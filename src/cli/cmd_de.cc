// `cellcube de` and `cellcube markers` (docs/DE.md): differential expression between two
// sides of a population, and marker genes of every value of a column.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cellcube/de.h"
#include "cellcube/render.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/table.h"

namespace cellcube::cli {

const char* const kDeHelp =
    R"(usage: cellcube de STORE --compare COL --group1 VALUE [--group1 VALUE]...
                   [--group2 VALUE]... | [--group2 rest] [--where COL=VALUE]...
                   [--datasets D,...] [--rollup COL]... [--test auto|donors|cells|wilcoxon]
                   [--donor COL]
                   [--min-cells N] [--min-frac F] [--direction up|down|both] [--top N]
                   [--format table|csv|json]

Which genes differ between two sides of the selected cells: side 1 is the groups whose
COL is one of the --group1 values, side 2 those whose COL is one of the --group2 values,
or (default, --group2 rest) every other selected group. Every gene measured on both
sides is tested; p-values are adjusted by Benjamini-Hochberg over the tested genes.

  --compare COL        the column whose values make the sides (cell_type, disease, ...)
  --group1 VALUE       a value of side 1, taken literally (repeat for several)
  --group2 VALUE|rest  a value of side 2 (repeat), or rest (default): all the others
  --where COL=VALUE    the population, as in 'cellcube query' (repeatable)
  --datasets D,...     only these datasets (default: all)
  --rollup COL         COL's ontology terms stand for their subtree (docs/ONTOLOGY.md):
                       --compare COL --group1 T compares T and all its subtypes with
                       the rest, less the cells labelled with T's ancestors (repeatable)
  --test T             auto (default): donors when each side keeps at least 2 donors,
                       else cells. donors: pseudobulk, each donor's mean is one unit
                       (paired when donors sit on both sides); cells: Welch's t over
                       cells, which overstates significance when donors vary;
                       wilcoxon: the Mann-Whitney U (rank-sum) test over the cells'
                       values binned by the store's histograms (t holds z, effect the
                       AUC; never chosen by auto)
  --donor COL          the donor column (default: donor, donor_id, individual,
                       patient or subject, the first the store has)
  --min-cells N        a donor counts on a side with at least N cells there (default 10)
  --min-frac F         keep genes expressed in at least F of side 1's cells (up), side
                       2's (down) or either (both) (default 0)
  --direction D        up (logfc > 0), down (logfc < 0) or both (default)
  --top N              the first N rows only (default: all)
  --format F           table (default), csv or json
  -h, --help           show this help

A donor is a (dataset, donor value) pair: donor labels repeat across studies. Output,
one row per tested gene, by padj then |logfc|: gene, symbol, n_cells1, n_cells2,
n_donors1, n_donors2 (empty under cells), mean1, mean2 (of the test's units), frac1,
frac2, logfc (mean1 - mean2), effect (Cohen's d; under wilcoxon the AUC), t (under
wilcoxon the z), df (empty under wilcoxon), pvalue, padj. A note on stderr says which
test ran and why.
)";

const char* const kMarkersHelp =
    R"(usage: cellcube markers STORE [--column COL] [--where COL=VALUE]... [--datasets D,...]
                        [--rollup COL]... [--top N] [--max-padj P]
                        [--direction up|down|both] [--min-frac F]
                        [--test auto|donors|cells|wilcoxon] [--donor COL]
                        [--min-cells N] [--format table|csv|json]

Marker genes of each value of a column (default cell_type) in the selected cells: for
each value, 'cellcube de --compare COL --group1 VALUE --group2 rest', then of its genes
in the --direction (default up: logfc > 0) with padj <= P (default 0.05), the N (default
10) that differ most (largest logfc, then effect). Output: COL, then the columns of
'cellcube de'.

  --column COL       the column whose values get markers (default cell_type)
  --where COL=VALUE  the population, as in 'cellcube query' (repeatable)
  --datasets D,...   only these datasets (default: all)
  --rollup COL       COL's ontology terms stand for their subtree (repeatable)
  --top N            markers per value (default 10)
  --max-padj P       keep genes with padj <= P (default 0.05)
  --direction D      up (default): genes higher in the value than in the rest (logfc > 0,
                     largest first); down: lower (logfc < 0, most negative first); both:
                     either, by |logfc|
  --min-frac F       keep genes expressed in at least F of the value's cells (up), the
                     rest's (down) or either's (both), as 'cellcube de' (default 0)
  --test, --donor, --min-cells   as 'cellcube de'
  --format F         table (default), csv or json
  -h, --help         show this help

With --rollup COL (an ontology-backed column, docs/ONTOLOGY.md), the values are the
terms a rolled-up 'cellcube query --by COL' shows: each term against the rest less its
ancestors' cells, skipping terms whose rest is empty.
)";

namespace {

std::string Cell(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

void PrintDeTable(const DeResult& r, const std::vector<std::string>* lead,
                  const std::string& lead_name) {
  if (r.rows.empty()) {
    std::cout << "no rows: no gene passed\n";
    return;
  }
  std::vector<std::string> header = DeColumnNames();
  if (lead) header.insert(header.begin(), lead_name);
  TextTable t(header);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const DeRow& row = r.rows[i];
    std::vector<std::string> cells;
    if (lead) cells.push_back((*lead)[i]);
    cells.push_back(r.gene_ids[i]);
    cells.push_back(r.symbols[i]);
    cells.push_back(WithThousands(row.n_cells1));
    cells.push_back(WithThousands(row.n_cells2));
    cells.push_back(row.n_donors1 >= 0 ? std::to_string(row.n_donors1) : "-");
    cells.push_back(row.n_donors2 >= 0 ? std::to_string(row.n_donors2) : "-");
    for (double v : {row.mean1, row.mean2, row.frac1, row.frac2, row.logfc, row.effect, row.t,
                     row.df, row.pvalue, row.padj})
      cells.push_back(Cell(v));
    t.AddRow(std::move(cells));
  }
  std::vector<size_t> right;
  for (size_t c = lead ? 3 : 2; c < header.size(); ++c) right.push_back(c);
  t.Print(std::cout, right, "");
}

const std::vector<std::string>& NotesOf(const DeResult& r) { return r.notes; }
const std::vector<std::string>& NotesOf(const MarkersResult& r) { return r.de.notes; }

Result<double> NumberOf(const Args& args, const char* name, double fallback) {
  const std::string text = args.GetOr(name, "");
  if (text.empty()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !std::isfinite(v))
    return Status::Usage(std::string("--") + name + " needs a number, not '" + text + "'");
  return v;
}

Status CheckFormat(const std::string& format) {
  if (format != "table" && format != "csv" && format != "json")
    return Status::Usage("--format must be table, csv or json, not '" + format + "'");
  return Status::Ok();
}

void PrintNotes(const std::vector<std::string>& notes) {
  for (const auto& n : notes) std::cerr << "note: " << n << "\n";
}

// The options de and markers share: the test and the donors.
Result<DeTest> TestOptions(const Args& args) {
  DeTest t;
  t.test = args.GetOr("test", "auto");
  t.donor = args.GetOr("donor", "");
  CC_ASSIGN_OR_RETURN(t.min_cells, args.GetInt("min-cells", 10, 0, int64_t{1} << 40));
  return t;
}

// Opens the store, runs `run`, and prints its answer as `format` (notes on stderr).
template <typename Output, typename Run, typename Table>
Status PrintAnswer(const Args& args, const std::string& format, Run&& run,
                   std::string (*csv)(const Output&),
                   std::string (*json_of)(const Output&, int64_t), Table&& table) {
  CC_ASSIGN_OR_RETURN(auto engine, QueryEngine::Open(args.positionals()[0]));
  const auto t0 = std::chrono::steady_clock::now();
  CC_ASSIGN_OR_RETURN(Output result, run(*engine));
  const auto took =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  PrintNotes(NotesOf(result));
  if (format == "csv")
    std::cout << csv(result);
  else if (format == "json")
    std::cout << json_of(result, took);
  else
    table(result);
  std::cout.flush();
  if (!std::cout) return Status::IoError("cannot write the output");
  return Status::Ok();
}

}  // namespace

Status RunDe(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"compare", true},
                                                    {"group1", true, true},
                                                    {"group2", true, true},
                                                    {"where", true, true},
                                                    {"datasets", true, true},
                                                    {"rollup", true, true},
                                                    {"test", true},
                                                    {"donor", true},
                                                    {"min-cells", true},
                                                    {"min-frac", true},
                                                    {"direction", true},
                                                    {"top", true},
                                                    {"format", true}}));
  if (args.positionals().size() != 1)
    return Status::Usage("de needs exactly one STORE (see 'cellcube de --help')");
  DeOptions o;
  CC_ASSIGN_OR_RETURN(o.population, PopulationOptions(args));
  CC_ASSIGN_OR_RETURN(o.testing, TestOptions(args));
  o.compare = args.GetOr("compare", "");
  if (o.compare.empty()) return Status::Usage("de needs --compare COL");
  o.group1 = args.GetAll("group1");
  if (o.group1.empty()) return Status::Usage("de needs --group1 VALUE");
  o.group2 = args.GetAll("group2");
  CC_ASSIGN_OR_RETURN(o.min_frac, NumberOf(args, "min-frac", 0));
  o.direction = args.GetOr("direction", "both");
  CC_ASSIGN_OR_RETURN(o.top, args.GetInt("top", -1, 0, int64_t{1} << 40));
  const std::string format = args.GetOr("format", "table");
  CC_RETURN_IF_ERROR(CheckFormat(format));
  return PrintAnswer<DeResult>(
      args, format, [&](const QueryEngine& e) { return RunDe(e, o); }, &FormatDeCsv, &FormatDeJson,
      [](const DeResult& r) { PrintDeTable(r, nullptr, ""); });
}

Status RunMarkers(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"column", true},
                                                    {"where", true, true},
                                                    {"datasets", true, true},
                                                    {"rollup", true, true},
                                                    {"top", true},
                                                    {"max-padj", true},
                                                    {"direction", true},
                                                    {"min-frac", true},
                                                    {"test", true},
                                                    {"donor", true},
                                                    {"min-cells", true},
                                                    {"format", true}}));
  if (args.positionals().size() != 1)
    return Status::Usage("markers needs exactly one STORE (see 'cellcube markers --help')");
  MarkersOptions o;
  CC_ASSIGN_OR_RETURN(o.population, PopulationOptions(args));
  CC_ASSIGN_OR_RETURN(o.testing, TestOptions(args));
  o.column = args.GetOr("column", "cell_type");
  CC_ASSIGN_OR_RETURN(o.top, args.GetInt("top", 10, 0, int64_t{1} << 40));
  CC_ASSIGN_OR_RETURN(o.max_padj, NumberOf(args, "max-padj", 0.05));
  o.direction = args.GetOr("direction", "up");
  CC_ASSIGN_OR_RETURN(o.min_frac, NumberOf(args, "min-frac", 0));
  const std::string format = args.GetOr("format", "table");
  CC_RETURN_IF_ERROR(CheckFormat(format));
  return PrintAnswer<MarkersResult>(
      args, format, [&](const QueryEngine& e) { return RunMarkers(e, o); }, &FormatMarkersCsv,
      &FormatMarkersJson, [](const MarkersResult& r) { PrintDeTable(r.de, &r.values, r.column); });
}

}  // namespace cellcube::cli
