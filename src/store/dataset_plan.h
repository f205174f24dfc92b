// Planning one input of a build (internal to src/store): everything decided about a
// dataset before its matrix is read — its columns, matrix, transform and genes.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aggregate/transform.h"
#include "cellcube/h5ad.h"
#include "cellcube/status.h"
#include "cellcube/store.h"
#include "store/meta_builder.h"

namespace cellcube {

// Everything decided about one input before its matrix is read. `file` and `columns`
// are held only while planning; the aggregation opens the file again, so a build of
// any number of inputs holds one file open at a time.
struct DatasetPlan {
  DatasetInput input;
  std::unique_ptr<h5ad::File> file;
  h5ad::MatrixInfo matrix;
  std::string cell_type_column;
  std::vector<std::string> groupby;
  std::vector<h5ad::Column> columns;  // cell type, then groupby (while planning)
  std::string symbols_column;
  std::string donor_column;  // the source column grouped by as "donor" (build --donor)
  aggregate::Transform transform = aggregate::Transform::kNone;
  struct stat source_stat {};  // the input as it was when planned, before it was opened
  int64_t n_obs = 0;
  std::vector<int32_t> gene_map;  // the matrix's genes -> the store's
  // --groupby columns the input lacks: NA for its cells (docs/BUILD.md); and its obs
  // columns, for suggestions when no input has one.
  std::vector<std::string> missing_groupby;
  std::vector<std::string> obs_columns;

  // For ontology matching (store/term_matching.h), kept after planning when the build
  // has term maps: per grouping column (cell type, then group-by, as `columns`), its
  // store name, its present values and, for a CELLxGENE pair, each value's term id.
  struct ColumnValues {
    std::string name;
    std::vector<std::string> values;
    std::vector<std::string> pair_ids;  // empty: not a pair
  };
  std::vector<ColumnValues> column_values;
  // Per grouping column (as `columns`): each source value's new value, where matching
  // changes it (its term's label); values not listed stay as they are.
  std::vector<std::vector<std::pair<std::string, std::string>>> renames;
};

// The id column of a CELLxGENE pair: "COL_ontology_term_id" for a column COL.
std::string PairIdColumn(const std::string& column);

// Opens and checks `input`, decides its columns (docs/BUILD.md, docs/SCALING.md), matrix, transform
// and symbols, and adds its genes to `meta`'s union; notes go to `callbacks.note`. The file is
// closed again before returning. With `keep_values`, the plan keeps its columns' values (and pairs'
// ids) for matching.
Result<DatasetPlan> PlanDataset(const DatasetInput& input, const BuildOptions& options,
                                const BuildCallbacks& callbacks, MetaBuilder* meta,
                                bool keep_values);

// An error when the input vanished or changed (size, mtime, inode) since it was planned.
Status CheckSourceUnchanged(const DatasetPlan& plan);

// The dataset's gene ids, made unique as anndata does (a note when any were renamed, if
// `callbacks` is given).
Result<std::vector<std::string>> GeneIds(const DatasetPlan& plan, const h5ad::File& file,
                                         const BuildCallbacks* callbacks);

// The input's path in quotes, for messages.
std::string Quote(const std::string& s);

}  // namespace cellcube
