// The aggregate store: per cell group and gene, the additive statistics nnz, sum and
// sumsq, with the groups' metadata (SPEC §2, §4). StoreData is the in-memory form that
// build, add, remove and merge produce and that WriteStore saves atomically as a
// valid .h5ad (docs/FORMAT.md).
//
// Thread safety: plain values; the functions may run on any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube {

inline constexpr const char* kStoreFormatVersion = "1";

// Where one dataset came from and how it was aggregated.
struct DatasetRecord {
  std::string name;
  std::string source;        // path of the .h5ad as given
  int64_t source_size = 0;   // bytes
  int64_t source_mtime = 0;  // seconds since the epoch
  int64_t n_cells = 0;
  int64_t n_genes = 0;  // genes the dataset measured
  int64_t n_groups = 0;
  std::string matrix;            // "raw/X", "X", "layers/counts", ...
  std::string transform;         // "none" | "log1p" | "cp10k_log1p"
  std::string cell_type_column;  // its name in the source
  std::vector<std::string> groupby;
  std::string gene_symbols_column;      // "" when none
  std::vector<int32_t> measured_genes;  // indices into StoreData::gene_ids, ascending
};

// Rows are cell groups, columns genes; statistics are CSC (by gene), one entry per
// (group, gene) where some cell had a nonzero value.
struct StoreData {
  // Grouping columns: "dataset", "cell_type", then the group-by columns.
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> labels;  // per column: its values (categories)
  std::vector<std::vector<int32_t>> codes;       // per column: per group, -1 = NA
  std::vector<int64_t> n_cells;                  // per group

  std::vector<std::string> gene_ids;      // the union of the datasets' var indexes
  std::vector<std::string> gene_symbols;  // per gene, "" when unknown

  std::vector<int64_t> indptr;  // per gene: its entries are [indptr[g], indptr[g + 1])
  std::vector<int32_t> group;   // per entry: the group (row), ascending within a gene
  std::vector<uint32_t> nnz;    // per entry: cells with value > 0
  // float64: float32 sums lose var/std to cancellation in near-constant groups
  // (docs/FORMAT.md).
  std::vector<double> sum;    // per entry: sum of values
  std::vector<double> sumsq;  // per entry: sum of squared values

  // One per value of the "dataset" column, in the same order.
  std::vector<DatasetRecord> datasets;

  int64_t n_groups() const { return static_cast<int64_t>(n_cells.size()); }
  int64_t n_genes() const { return static_cast<int64_t>(gene_ids.size()); }
  int64_t n_entries() const { return static_cast<int64_t>(group.size()); }

  // Checks every invariant above (sizes, ranges, order); Corrupt error naming the first
  // broken one.
  Status Validate() const;
};

// Concatenates stores with disjoint datasets: groups are stacked, genes united by id,
// column values united. A dataset name present in two parts is an error.
Result<StoreData> Concatenate(const std::vector<const StoreData*>& parts);

// Drops the named datasets (unknown names are an error suggesting near names), and
// the genes and column values no remaining dataset uses.
Result<StoreData> RemoveDatasets(const StoreData& store, const std::vector<std::string>& names);

// Writes the store as an .h5ad: to a temporary file beside `path`, flushed and synced,
// then renamed over `path`; on any error the temporary file is removed and `path` is
// untouched.
Status WriteStore(const StoreData& store, const std::string& path);

// Reads a store written by WriteStore (for add, remove, merge, info).
Result<StoreData> LoadStore(const std::string& path);

// ---- building from .h5ad files ----

struct DatasetInput {
  std::string name;  // the file stem unless given as NAME=PATH
  std::string path;
};

// Parses "NAME=PATH" or "PATH" (name = file stem).
DatasetInput ParseDatasetInput(const std::string& arg);

struct BuildOptions {
  std::string cell_type_column;      // "" = the first of SPEC §5's list that exists
  std::vector<std::string> groupby;  // used when groupby_given
  bool groupby_given = false;        // else: every other categorical/boolean column, 2-200 values
  std::string matrix = "auto";
  std::string transform = "auto";
  std::string gene_symbols;  // "" = the first of SPEC §5's list that exists
  int64_t max_groups = 10000;
  int threads = 0;                             // 0 = every core
  uint64_t memory_budget = uint64_t{1} << 30;  // for accumulators; more means gene passes
  bool direct_reads = true;  // inflate gzip chunks outside HDF5 (see StreamOptions)
};

struct BuildProgress {
  std::string dataset;
  int64_t cells_done = 0;   // across all datasets
  int64_t cells_total = 0;  // across all datasets
};

struct BuildCallbacks {
  // Called from worker threads, serialised; may be empty.
  std::function<void(const BuildProgress&)> progress;
  // One line of information (the transform chosen, duplicate genes renamed, ...).
  std::function<void(const std::string&)> note;
};

// Reads each input and aggregates it into a one-dataset store, several datasets at
// once, and returns their concatenation.
Result<StoreData> BuildStore(const std::vector<DatasetInput>& inputs, const BuildOptions& options,
                             const BuildCallbacks& callbacks);

}  // namespace cellcube
