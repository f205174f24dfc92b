// `cellcube build` and `cellcube add`: aggregate .h5ad files into a store.
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>

#include "cellcube/store.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "util/isolate.h"
#include "util/text.h"

namespace cellcube::cli {

#define CC_BUILD_OPTIONS_HELP                                                                    \
  "  --cell-type COL[,COL] the cell-type column; a list is candidates, each file using the\n"    \
  "                        first it has (default: the first of cell_type, celltype,\n"           \
  "                        cell_ontology_class, CellType, cell_type_ontology_term_id, leiden,\n" \
  "                        louvain that exists)\n"                                               \
  "  --groupby COL[,COL]   the other columns to group cells by ('' = none). Default: the\n"      \
  "                        other categorical or boolean obs columns, less identifier-like\n"     \
  "                        ones (over 200 values, or over half the cells); while groups\n"       \
  "                        would average under 5 cells, the one with the most values is\n"       \
  "                        dropped (the later on a tie). A note names what was left out\n"       \
  "                        (docs/BUILD.md); an explicit list giving such groups warns\n"         \
  "  --matrix M            auto | X | raw | layers/NAME (default auto: raw/X, else\n"            \
  "                        layers/counts, else X)\n"                                             \
  "  --transform T         auto | none | log1p | cp10k_log1p (default auto: cp10k_log1p for\n"   \
  "                        integer counts, else none). A matrix with values below 0 after\n"     \
  "                        it (scaled data) is flagged, with a warning: answers leave its\n"     \
  "                        mean_expr empty (docs/BUILD.md)\n"                                    \
  "  --gene-symbols COL[,COL]\n"                                                                 \
  "                        var column with gene symbols; a list is candidates, as for\n"         \
  "                        --cell-type (default: feature_name, gene_symbols, gene_symbol,\n"     \
  "                        gene_name or symbol, if present)\n"                                   \
  "  --donor COL[,COL]     donor column candidates: each file also groups its cells by the\n"    \
  "                        first it has, stored as one column named 'donor' (the unit of\n"      \
  "                        'cellcube de's donor-level test)\n"                                   \
  "  --max-groups N        most cell groups one dataset may have (default 10000)\n"              \
  "  --hist-max H          the histograms' upper edge: each (group, gene) keeps a histogram\n"   \
  "                        of its values above 0 in 64 bins over (0, H], for medians,\n"         \
  "                        quartiles and violins (default 9.2104 = ln(10001), the largest\n"     \
  "                        cp10k_log1p value; values above H count in the top bin, and a\n"      \
  "                        note says how many). add keeps the store's: a different H is an\n"    \
  "                        error there\n"                                                        \
  "  --no-histograms       no histograms (a smaller store; distribution metrics then\n"          \
  "                        need a rebuild). add keeps the store's layout\n"                      \
  "  --ontology FILE       an ontology term map (cellxgene-ontology-guide's JSON: .json,\n"      \
  "                        .json.gz or .json.zst), e.g. the Cell Ontology's; repeatable.\n"      \
  "                        Columns whose values are its terms (ids, labels or synonyms) are\n"   \
  "                        bound to it: their values become the terms' labels, the store\n"      \
  "                        embeds the terms with their ancestors, and queries can roll\n"        \
  "                        them up (--rollup). add without it matches the new datasets\n"        \
  "                        against the store's embedded terms (docs/ONTOLOGY.md)\n"              \
  "  --threads N           worker threads (default: every core)\n"                               \
  "  --quiet               no progress bar or notes (warnings still print)\n"                    \
  "  --no-direct-reads     read every chunk through libhdf5 (slower; for comparison)\n\n"        \
  "Datasets are named by file stem, or NAME=FILE.h5ad. A FOLDER stands for the .h5ad\n"          \
  "files directly in it, in name order.\n"

// The options of build and add in their usage lines (README.md's synopsis has the same:
// tests/python/test_cli_synopsis.py compares them).
#define CC_BUILD_OPTIONS_USAGE                                                                  \
  "         [--cell-type COL[,COL...]] [--groupby COL,...] [--matrix auto|X|raw|layers/NAME]\n" \
  "         [--transform auto|none|log1p|cp10k_log1p] [--gene-symbols COL[,COL...]]\n"          \
  "         [--donor COL[,COL...]] [--max-groups N] [--hist-max H | --no-histograms]\n"         \
  "         [--ontology FILE]... [--threads N] [--quiet] [--no-direct-reads]\n\n"

const char* const kBuildHelp =
    "usage: cellcube build -o STORE [NAME=]FILE.h5ad|FOLDER...\n" CC_BUILD_OPTIONS_USAGE
    "Aggregates each .h5ad file's matrix into per-cell-group statistics (nnz, sum, m2\n"
    "and a 64-bin histogram per gene) and writes them as one store (itself a valid\n"
    ".h5ad), atomically.\n\n"
    "  -o, --output STORE    the store to write (replaced atomically if it "
    "exists)\n" CC_BUILD_OPTIONS_HELP;

const char* const kAddHelp =
    "usage: cellcube add STORE [NAME=]FILE.h5ad|FOLDER...\n" CC_BUILD_OPTIONS_USAGE
    "Adds datasets to an existing store without re-reading the others' files. Names must\n"
    "be new (remove a dataset first to rebuild it). The store is replaced "
    "atomically.\n\n" CC_BUILD_OPTIONS_HELP;

namespace {

// The memory the operation plans for: the bound it runs under (--memory-limit), or,
// with no bound, half the machine.
uint64_t MemoryToPlanFor() {
  if (const uint64_t limit = MemoryLimitInForce(); limit > 0) return limit;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return kDefaultMemoryLimit;
  return std::max(kDefaultMemoryLimit,
                  static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 2);
}

const std::vector<OptionSpec> kBuildSpecs = {{"output", true},        {"o", true},
                                             {"cell-type", true},     {"groupby", true},
                                             {"matrix", true},        {"transform", true},
                                             {"gene-symbols", true},  {"max-groups", true},
                                             {"donor", true},         {"threads", true},
                                             {"quiet", false},        {"no-direct-reads", false},
                                             {"hist-max", true},      {"no-histograms", false},
                                             {"ontology", true, true}};

// --hist-max: a finite number above 0 (docs/BUILD.md "Histograms").
Result<double> HistMax(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || !(v > 0))
    return Status::Usage(
        "--hist-max needs a finite number above 0 (the histograms' upper edge, "
        "e.g. 9.2104 for cp10k_log1p data), not '" +
        text + "'");
  return v;
}

Result<BuildOptions> ParseBuildOptions(const Args& args) {
  BuildOptions o;
  if (auto c = args.Get("cell-type")) o.cell_type = SplitList(*c);
  if (auto g = args.Get("groupby")) {
    o.groupby_given = true;
    o.groupby = SplitList(*g);
  }
  o.matrix = args.GetOr("matrix", "auto");
  o.transform = args.GetOr("transform", "auto");
  if (o.transform != "auto" && o.transform != "none" && o.transform != "log1p" &&
      o.transform != "cp10k_log1p")
    return Status::Usage("unknown --transform '" + o.transform +
                         "' (choose auto, none, log1p or cp10k_log1p)");
  if (auto g = args.Get("gene-symbols")) o.gene_symbols = SplitList(*g);
  if (auto d = args.Get("donor")) o.donor = SplitList(*d);
  CC_ASSIGN_OR_RETURN(o.max_groups, args.GetInt("max-groups", 10000, 1, 100000000));
  CC_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0, 0, 1024));
  o.threads = static_cast<int>(threads);
  o.memory_limit = MemoryToPlanFor();
  o.direct_reads = !args.Flag("no-direct-reads");
  o.histograms = !args.Flag("no-histograms");
  if (auto h = args.Get("hist-max")) {
    if (!o.histograms)
      return Status::Usage("--hist-max and --no-histograms contradict each other; give one");
    CC_ASSIGN_OR_RETURN(o.hist_max, HistMax(*h));
    o.hist_max_given = true;
  }
  for (const auto& path : args.GetAll("ontology")) o.ontologies.push_back({path, ""});
  return o;
}

// A folder stands for the .h5ad files directly in it, in name order (a study's folder of
// datasets is the common case); files keep their NAME= or their stem.
Result<std::vector<DatasetInput>> ExpandInputs(const std::vector<std::string>& args) {
  std::vector<DatasetInput> inputs;
  for (const auto& arg : args) {
    DatasetInput in = ParseDatasetInput(arg);
    std::error_code ec;
    if (!std::filesystem::is_directory(in.path, ec)) {
      inputs.push_back(std::move(in));
      continue;
    }
    if (in.path != arg)
      return Status::Usage("'" + arg + "' names a folder; NAME= names one file (NAME=FILE.h5ad)");
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(in.path, ec))
      if (e.path().extension() == ".h5ad" && e.is_regular_file(ec)) found.push_back(e.path());
    if (ec) return Status::IoError("cannot list folder '" + in.path + "': " + ec.message());
    if (found.empty()) return Status::NotFound("folder '" + in.path + "' holds no .h5ad file");
    std::sort(found.begin(), found.end());
    for (const auto& f : found) inputs.push_back(ParseDatasetInput(f));
  }
  return inputs;
}

// Progress and notes of a store operation on the terminal. Notes are shown once the
// operation succeeded: a failed one prints its one error line.
class OperationOutput {
 public:
  explicit OperationOutput(bool quiet) : quiet_(quiet), bar_(quiet) {
    callbacks_.progress = [this](const BuildProgress& p) {
      bar_.Update(p.cells_done, p.cells_total, p.dataset);
    };
    callbacks_.write_progress = [this](int64_t done, int64_t total) {
      bar_.Update(done, total, "writing the store (genes)");
    };
    callbacks_.note = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mu_);
      notes_.push_back(line);
    };
  }
  const BuildCallbacks& callbacks() const { return callbacks_; }
  // Clears the bar; on success prints the notes and `summary`.
  void Finish(bool ok, const std::string& summary) {
    bar_.Finish();
    if (!ok) return;
    // --quiet silences notes, not warnings: a warning is about the answers to come.
    for (const auto& line : notes_)
      if (!quiet_ || line.rfind("warning: ", 0) == 0) std::cerr << line << "\n";
    if (!summary.empty() && !quiet_) std::cerr << summary << "\n";
  }

 private:
  bool quiet_;
  ProgressBar bar_;
  BuildCallbacks callbacks_;
  std::mutex mu_;
  std::vector<std::string> notes_;
};

std::string Describe(const StoreSummary& s, const std::string& verb, const std::string& path,
                     double seconds) {
  char line[512];
  std::snprintf(line, sizeof line,
                "%s %s: %lld datasets, %s cells in %s groups, %s genes, %s entries (%.1f s)",
                verb.c_str(), path.c_str(), static_cast<long long>(s.datasets),
                WithThousands(s.cells).c_str(), WithThousands(s.groups).c_str(),
                WithThousands(s.genes).c_str(), WithThousands(s.entries).c_str(), seconds);
  return line;
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs a store operation with progress and notes; prints its summary line.
Status RunOperation(bool quiet, const std::string& verb, const std::string& path,
                    const std::function<Result<StoreSummary>(const BuildCallbacks&)>& op) {
  const auto t0 = std::chrono::steady_clock::now();
  OperationOutput output(quiet);
  auto summary = op(output.callbacks());
  output.Finish(summary.ok(), summary.ok() ? Describe(*summary, verb, path, Since(t0)) : "");
  return summary.status();
}

}  // namespace

Status RunBuild(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, kBuildSpecs));
  std::string out = args.GetOr("output", args.GetOr("o", ""));
  if (out.empty()) return Status::Usage("build needs -o STORE (see 'cellcube build --help')");
  CC_ASSIGN_OR_RETURN(BuildOptions options, ParseBuildOptions(args));
  if (args.positionals().empty()) return Status::Usage("no input .h5ad files given");
  CC_ASSIGN_OR_RETURN(std::vector<DatasetInput> inputs, ExpandInputs(args.positionals()));
  return RunOperation(args.Flag("quiet"), "wrote", out, [&](const BuildCallbacks& cb) {
    return BuildStoreFile(inputs, options, cb, out);
  });
}

Status RunAdd(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, kBuildSpecs));
  if (args.positionals().size() < 2)
    return Status::Usage(
        "add needs a STORE and at least one FILE.h5ad (see 'cellcube add --help')");
  const std::string& path = args.positionals()[0];
  CC_ASSIGN_OR_RETURN(BuildOptions options, ParseBuildOptions(args));
  std::vector<std::string> files(args.positionals().begin() + 1, args.positionals().end());
  CC_ASSIGN_OR_RETURN(std::vector<DatasetInput> inputs, ExpandInputs(files));
  return RunOperation(args.Flag("quiet"), "wrote", path, [&](const BuildCallbacks& cb) {
    return AddToStoreFile(path, inputs, options, cb);
  });
}

const char* const kRemoveHelp =
    "usage: cellcube remove STORE DATASET... [--quiet]\n\n"
    "Removes datasets from a store (their groups, and genes no other dataset measured).\n"
    "The store is replaced atomically.\n\n"
    "  --quiet   no progress bar or notes (warnings still print)\n";

Status RunRemove(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"quiet", false}}));
  if (args.positionals().size() < 2)
    return Status::Usage("remove needs a STORE and at least one DATASET name");
  const std::string& path = args.positionals()[0];
  std::vector<std::string> names(args.positionals().begin() + 1, args.positionals().end());
  return RunOperation(args.Flag("quiet"),
                      "removed " + std::to_string(names.size()) +
                          (names.size() == 1 ? " dataset" : " datasets") + "; wrote",
                      path, [&](const BuildCallbacks& cb) {
                        return RemoveFromStoreFile(path, names, MemoryToPlanFor(), cb);
                      });
}

const char* const kMergeHelp =
    "usage: cellcube merge -o STORE STORE1 STORE2... [--quiet]\n\n"
    "Combines stores with disjoint datasets (e.g. shards built on many machines) into one,\n"
    "without reading any .h5ad again, in bounded memory. The output is written "
    "atomically.\n\n"
    "  -o, --output STORE   the store to write (replaced atomically if it exists)\n"
    "  --quiet              no progress bar or notes (warnings still print)\n";

Status RunMerge(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args,
                      Args::Parse(argv, {{"output", true}, {"o", true}, {"quiet", false}}));
  std::string out = args.GetOr("output", args.GetOr("o", ""));
  if (out.empty()) return Status::Usage("merge needs -o STORE");
  if (args.positionals().empty()) return Status::Usage("merge needs at least one input store");
  return RunOperation(args.Flag("quiet"), "merged into", out, [&](const BuildCallbacks& cb) {
    return MergeStoreFiles(args.positionals(), out, MemoryToPlanFor(), cb);
  });
}

}  // namespace cellcube::cli
