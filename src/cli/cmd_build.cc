// `cellcube build` and `cellcube add`: aggregate .h5ad files into a store.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "cellcube/store.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "util/text.h"

namespace cellcube::cli {

#define CC_BUILD_OPTIONS_HELP                                                                    \
  "  --cell-type COL       the cell-type column (default: the first of cell_type, celltype,\n"   \
  "                        cell_ontology_class, CellType, cell_type_ontology_term_id, leiden,\n" \
  "                        louvain that exists)\n"                                               \
  "  --groupby COL[,COL]   the other columns to group cells by (default: every other\n"          \
  "                        categorical or boolean obs column with 2 to 200 values; '' = none)\n" \
  "  --matrix M            auto | X | raw | layers/NAME (default auto: raw/X, else\n"            \
  "                        layers/counts, else X)\n"                                             \
  "  --transform T         auto | none | log1p | cp10k_log1p (default auto: cp10k_log1p for\n"   \
  "                        integer counts, else none)\n"                                         \
  "  --gene-symbols COL    var column with gene symbols (default: feature_name, gene_symbols,\n" \
  "                        gene_symbol, gene_name or symbol, if present)\n"                      \
  "  --max-groups N        most cell groups one dataset may have (default 10000)\n"              \
  "  --threads N           worker threads (default: every core)\n"                               \
  "  --quiet               no progress bar or notes\n"                                           \
  "  --memory-budget-mb N  memory for accumulators before genes are done in passes (1024)\n"     \
  "  --no-direct-reads     read every chunk through libhdf5 (slower; for comparison)\n"          \
  "Datasets are named by file stem, or NAME=FILE.h5ad. A FOLDER stands for the .h5ad\n"          \
  "files directly in it, in name order.\n"

const char* const kBuildHelp =
    "usage: cellcube build -o STORE [options] [NAME=]FILE.h5ad|FOLDER...\n\n"
    "Aggregates each .h5ad file's matrix into per-cell-group statistics (nnz, sum, sumsq\n"
    "per gene) and writes them as one store (itself a valid .h5ad), atomically.\n\n"
    "  -o, --output STORE    the store to write (replaced atomically if it "
    "exists)\n" CC_BUILD_OPTIONS_HELP;

const char* const kAddHelp =
    "usage: cellcube add STORE [options] [NAME=]FILE.h5ad|FOLDER...\n\n"
    "Adds datasets to an existing store without re-reading the others' files. Names must\n"
    "be new (remove a dataset first to rebuild it). The store is replaced "
    "atomically.\n\n" CC_BUILD_OPTIONS_HELP;

namespace {

const std::vector<OptionSpec> kBuildSpecs = {
    {"output", true},  {"o", true},         {"cell-type", true},        {"groupby", true},
    {"matrix", true},  {"transform", true}, {"gene-symbols", true},     {"max-groups", true},
    {"threads", true}, {"quiet", false},    {"memory-budget-mb", true}, {"no-direct-reads", false}};

Result<BuildOptions> ParseBuildOptions(const Args& args) {
  BuildOptions o;
  o.cell_type_column = args.GetOr("cell-type", "");
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
  o.gene_symbols = args.GetOr("gene-symbols", "");
  CC_ASSIGN_OR_RETURN(o.max_groups, args.GetInt("max-groups", 10000, 1, 100000000));
  CC_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0, 0, 1024));
  o.threads = static_cast<int>(threads);
  CC_ASSIGN_OR_RETURN(int64_t budget_mb, args.GetInt("memory-budget-mb", 1024, 1, 1 << 24));
  o.memory_budget = static_cast<uint64_t>(budget_mb) << 20;
  o.direct_reads = !args.Flag("no-direct-reads");
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

Result<StoreData> BuildFromArgs(const Args& args, const std::vector<std::string>& files) {
  CC_ASSIGN_OR_RETURN(BuildOptions options, ParseBuildOptions(args));
  if (files.empty()) return Status::Usage("no input .h5ad files given");
  CC_ASSIGN_OR_RETURN(std::vector<DatasetInput> inputs, ExpandInputs(files));
  const bool quiet = args.Flag("quiet");
  ProgressBar bar(quiet);
  BuildCallbacks cb;
  cb.progress = [&](const BuildProgress& p) { bar.Update(p.cells_done, p.cells_total, p.dataset); };
  // Notes are shown once the build succeeded: a failed build prints its one error line.
  std::vector<std::string> notes;
  std::mutex notes_mu;
  cb.note = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(notes_mu);
    notes.push_back(line);
  };
  auto store = BuildStore(inputs, options, cb);
  bar.Finish();
  if (store.ok() && !quiet)
    for (const auto& line : notes) std::cerr << line << "\n";
  return store;
}

void Summarise(const StoreData& s, const std::string& path, double seconds, bool quiet) {
  if (quiet) return;
  int64_t cells = 0;
  for (const auto& d : s.datasets) cells += d.n_cells;
  std::fprintf(stderr,
               "wrote %s: %zu datasets, %s cells in %s groups, %s genes, %s entries (%.1f s)\n",
               path.c_str(), s.datasets.size(), WithThousands(cells).c_str(),
               WithThousands(s.n_groups()).c_str(), WithThousands(s.n_genes()).c_str(),
               WithThousands(s.n_entries()).c_str(), seconds);
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Status RunBuild(const std::vector<std::string>& argv) {
  auto t0 = std::chrono::steady_clock::now();
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, kBuildSpecs));
  std::string out = args.GetOr("output", args.GetOr("o", ""));
  if (out.empty()) return Status::Usage("build needs -o STORE (see 'cellcube build --help')");
  CC_ASSIGN_OR_RETURN(StoreData store, BuildFromArgs(args, args.positionals()));
  CC_RETURN_IF_ERROR(WriteStore(store, out));
  Summarise(store, out, Since(t0), args.Flag("quiet"));
  return Status::Ok();
}

Status RunAdd(const std::vector<std::string>& argv) {
  auto t0 = std::chrono::steady_clock::now();
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, kBuildSpecs));
  if (args.positionals().size() < 2)
    return Status::Usage(
        "add needs a STORE and at least one FILE.h5ad (see 'cellcube add --help')");
  const std::string& path = args.positionals()[0];
  CC_ASSIGN_OR_RETURN(StoreData existing, LoadStore(path));
  std::vector<std::string> files(args.positionals().begin() + 1, args.positionals().end());
  for (const auto& f : files) {
    std::string name = ParseDatasetInput(f).name;
    for (const auto& d : existing.datasets)
      if (d.name == name)
        return Status::InvalidArgument("dataset '" + name + "' is already in '" + path +
                                       "'; remove it first ('cellcube remove') or add it under "
                                       "another name with NAME=FILE.h5ad");
  }
  CC_ASSIGN_OR_RETURN(StoreData added, BuildFromArgs(args, files));
  CC_ASSIGN_OR_RETURN(StoreData merged, Concatenate({&existing, &added}));
  CC_RETURN_IF_ERROR(WriteStore(merged, path));
  Summarise(merged, path, Since(t0), args.Flag("quiet"));
  return Status::Ok();
}

const char* const kRemoveHelp =
    "usage: cellcube remove STORE DATASET...\n\n"
    "Removes datasets from a store (their groups, and genes no other dataset measured).\n"
    "The store is replaced atomically.\n";

Status RunRemove(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"quiet", false}}));
  if (args.positionals().size() < 2)
    return Status::Usage("remove needs a STORE and at least one DATASET name");
  const std::string& path = args.positionals()[0];
  CC_ASSIGN_OR_RETURN(StoreData store, LoadStore(path));
  std::vector<std::string> names(args.positionals().begin() + 1, args.positionals().end());
  CC_ASSIGN_OR_RETURN(StoreData kept, RemoveDatasets(store, names));
  if (kept.datasets.empty())
    return Status::InvalidArgument("removing every dataset would leave an empty store; delete '" +
                                   path + "' instead");
  CC_RETURN_IF_ERROR(WriteStore(kept, path));
  if (!args.Flag("quiet"))
    std::fprintf(stderr, "removed %zu datasets from %s; %zu remain\n", names.size(), path.c_str(),
                 kept.datasets.size());
  return Status::Ok();
}

const char* const kMergeHelp =
    "usage: cellcube merge -o STORE STORE1 STORE2...\n\n"
    "Combines stores with disjoint datasets (e.g. shards built on many machines) into one,\n"
    "without reading any .h5ad again. The output is written atomically.\n";

Status RunMerge(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args,
                      Args::Parse(argv, {{"output", true}, {"o", true}, {"quiet", false}}));
  std::string out = args.GetOr("output", args.GetOr("o", ""));
  if (out.empty()) return Status::Usage("merge needs -o STORE");
  if (args.positionals().empty()) return Status::Usage("merge needs at least one input store");
  std::vector<StoreData> stores;
  for (const auto& p : args.positionals()) {
    CC_ASSIGN_OR_RETURN(StoreData s, LoadStore(p));
    stores.push_back(std::move(s));
  }
  std::vector<const StoreData*> parts;
  for (const auto& s : stores) parts.push_back(&s);
  CC_ASSIGN_OR_RETURN(StoreData merged, Concatenate(parts));
  CC_RETURN_IF_ERROR(WriteStore(merged, out));
  if (!args.Flag("quiet"))
    std::fprintf(stderr, "merged %zu stores into %s: %zu datasets, %s groups, %s genes\n",
                 stores.size(), out.c_str(), merged.datasets.size(),
                 WithThousands(merged.n_groups()).c_str(), WithThousands(merged.n_genes()).c_str());
  return Status::Ok();
}

}  // namespace cellcube::cli
