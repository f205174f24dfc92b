// Building and changing stores on disk (docs/BUILD.md, docs/SCALING.md): build from .h5ad files,
// add, remove and merge; the data model they write is store_data.h's.
//
// They work in bounded memory (docs/SCALING.md): they stream entries gene by gene from their
// parts (datasets aggregated into a temporary file beside the output, existing stores
// read through small windows) into a store written beside its target and renamed over
// it; only the metadata (groups, genes, datasets) is held whole.
//
// Thread safety: plain values; the functions may run on any thread, one operation on a
// given output at a time per process (runs in separate processes coordinate). The
// callbacks are called as BuildCallbacks says.
// Errors: one line (a Status); on any error the target is untouched and the temporary
// files are removed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cellcube/status.h"
#include "cellcube/store_data.h"

namespace cellcube {

// What a store operation wrote, for its closing line.
struct StoreSummary {
  int64_t datasets = 0;
  int64_t cells = 0;
  int64_t groups = 0;
  int64_t genes = 0;
  int64_t entries = 0;
};

// The default bound on a command's memory (docs/SCALING.md).
inline constexpr uint64_t kDefaultMemoryLimit = uint64_t{2} << 30;

// The histograms' default upper edge: ln(10001), the largest cp10k_log1p value
// (histogram::kDefaultMax, which src/store checks it equals).
inline constexpr double kDefaultHistMax = 9.210440366976517;

// ---- building from .h5ad files ----

// docs/BUILD.md's defaults, in order: the cell-type columns build looks for in obs, and the
// gene-symbol columns in the matrix's var (the first present is used).
const std::vector<std::string>& DefaultCellTypeColumns();
const std::vector<std::string>& DefaultGeneSymbolColumns();

struct DatasetInput {
  std::string name;  // the file stem unless given as NAME=PATH
  std::string path;
};

// An ontology term map (docs/ONTOLOGY.md): a file, or its bytes already in memory (the
// demo's embedded maps), `path` then naming it (and giving its version, as a file name
// would).
struct OntologyFile {
  std::string path;
  std::string bytes;  // empty: read `path`
};

struct BuildOptions {
  // Cell-type column candidates: each dataset uses the first it has (docs/BUILD.md); empty =
  // the first of docs/BUILD.md's list that exists.
  std::vector<std::string> cell_type;
  std::vector<std::string> groupby;  // used when groupby_given
  bool groupby_given = false;        // else: every other categorical/boolean column, 2-200 values
  std::string matrix = "auto";
  std::string transform = "auto";
  // Gene-symbol column candidates, as cell_type; empty = the first of docs/BUILD.md's list that
  // exists, or none.
  std::vector<std::string> gene_symbols;
  // Donor column candidates (docs/DE.md): each dataset groups by the first it has, stored as
  // one grouping column named "donor"; empty = none.
  std::vector<std::string> donor;
  int64_t max_groups = 10000;
  int threads = 0;  // 0 = every core
  // The memory the whole command may use; accumulators, read-ahead and write buffers are
  // sized from it (a dataset whose accumulators do not fit is aggregated in gene passes).
  uint64_t memory_limit = kDefaultMemoryLimit;
  bool direct_reads = true;  // inflate gzip chunks outside HDF5 (see StreamOptions)
  // The histograms (docs/FORMAT.md "Histograms"): whether the store has them, and their
  // upper edge H (64 bins over (0, H]; values above H are counted in the top bin). `add`
  // takes both from the store it adds to (an explicit, different hist_max is an error).
  bool histograms = true;
  double hist_max = kDefaultHistMax;
  bool hist_max_given = false;  // set on the command line (add checks it)
  // Term maps to match the grouping columns' values against (build --ontology); for add,
  // empty = the store's embedded terms (docs/ONTOLOGY.md).
  std::vector<OntologyFile> ontologies;
};

struct BuildProgress {
  std::string dataset;
  int64_t cells_done = 0;   // across all datasets
  int64_t cells_total = 0;  // across all datasets
};

struct BuildCallbacks {
  // Called from worker threads, serialised; may be empty.
  std::function<void(const BuildProgress&)> progress;
  // While the store is written: genes done of the total; may be empty.
  std::function<void(int64_t, int64_t)> write_progress;
  // One line of information (the transform chosen, duplicate genes renamed, ...).
  std::function<void(const std::string&)> note;
};

// Reads each input, aggregates it (one dataset at a time, on every thread), and writes
// the store `out` atomically. Every input is checked before the first is aggregated.
Result<StoreSummary> BuildStoreFile(const std::vector<DatasetInput>& inputs,
                                    const BuildOptions& options, const BuildCallbacks& callbacks,
                                    const std::string& out);

// Adds datasets to the store at `store` (names must be new), replacing it atomically.
Result<StoreSummary> AddToStoreFile(const std::string& store,
                                    const std::vector<DatasetInput>& inputs,
                                    const BuildOptions& options, const BuildCallbacks& callbacks);

// Drops the named datasets (unknown names are an error suggesting near names), and the
// genes and column values no remaining dataset uses; removing every dataset is an error.
Result<StoreSummary> RemoveFromStoreFile(const std::string& store,
                                         const std::vector<std::string>& names,
                                         uint64_t memory_limit, const BuildCallbacks& callbacks);

// Concatenates stores with disjoint datasets into `out`: groups stacked in the order
// given, genes united by id, column values united. A dataset in two stores is an error.
Result<StoreSummary> MergeStoreFiles(const std::vector<std::string>& stores, const std::string& out,
                                     uint64_t memory_limit, const BuildCallbacks& callbacks);

}  // namespace cellcube
