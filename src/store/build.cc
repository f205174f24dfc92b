// Building a store from .h5ad files: for each dataset, choose the columns, matrix and
// transform, group the cells, and accumulate the statistics over the matrix's blocks
// on several threads; then concatenate the datasets.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "aggregate/accumulator.h"
#include "aggregate/grouping.h"
#include "aggregate/transform.h"
#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "util/text.h"

namespace cellcube {
namespace {

using aggregate::Accumulator;
using aggregate::Transform;
using h5ad::Column;
using h5ad::ColumnKind;
using h5ad::File;

const std::vector<std::string> kCellTypeCandidates = {
    "cell_type", "celltype", "cell_ontology_class", "CellType", "cell_type_ontology_term_id",
    "leiden",    "louvain"};
const std::vector<std::string> kSymbolCandidates = {"feature_name", "gene_symbols", "gene_symbol",
                                                    "gene_name", "symbol"};
constexpr int64_t kAutoGroupbyMaxValues = 200;
constexpr int64_t kTransformSample = 10000;

// Everything decided about one input before its matrix is read.
struct DatasetPlan {
  DatasetInput input;
  std::unique_ptr<File> file;
  h5ad::MatrixInfo matrix;
  std::string cell_type_column;
  std::vector<std::string> groupby;
  std::vector<Column> columns;  // cell type, then groupby
  std::string symbols_column;
  Transform transform = Transform::kNone;
  struct stat source_stat {};  // the input as it was when planned, before it was opened
};

// An input that vanished or was modified (size, mtime, inode) since it was planned:
// its statistics may mix old and new contents.
Status CheckSourceUnchanged(const DatasetPlan& plan) {
  struct stat now {};
  const std::string& path = plan.input.path;
  if (::stat(path.c_str(), &now) != 0)
    return Status::IoError("'" + path + "' vanished while it was being read; run the build again");
  const struct stat& then = plan.source_stat;
  if (now.st_size != then.st_size || now.st_ino != then.st_ino || now.st_dev != then.st_dev ||
      now.st_mtim.tv_sec != then.st_mtim.tv_sec || now.st_mtim.tv_nsec != then.st_mtim.tv_nsec)
    return Status::IoError("'" + path + "' changed while it was being read; run the build again");
  return Status::Ok();
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

Result<std::string> ChooseCellType(const File& file, const std::vector<std::string>& obs_columns,
                                   const BuildOptions& options) {
  if (!options.cell_type_column.empty()) {
    if (!Contains(obs_columns, options.cell_type_column))
      return Status::NotFound("no obs column " + Quote(options.cell_type_column) +
                              " for --cell-type" +
                              SuggestionSuffix(options.cell_type_column, obs_columns));
    return options.cell_type_column;
  }
  for (const auto& c : kCellTypeCandidates)
    if (Contains(obs_columns, c)) return c;
  (void)file;
  return Status::NotFound("no cell-type column (none of " + QuoteList(kCellTypeCandidates) +
                          " is in obs); choose one with --cell-type (obs has " +
                          QuoteList(obs_columns) + ")");
}

bool Groupable(const Column& col) {
  return col.kind == ColumnKind::kCategorical || col.kind == ColumnKind::kBoolean ||
         col.kind == ColumnKind::kNullableBoolean;
}

Status ChooseGroupby(DatasetPlan* plan, const std::vector<std::string>& obs_columns,
                     const BuildOptions& options) {
  const File& file = *plan->file;
  if (options.groupby_given) {
    for (const auto& name : options.groupby) {
      if (name == plan->cell_type_column) continue;
      if (name == "dataset" || name == "cell_type")
        return Status::InvalidArgument("--groupby column " + Quote(name) +
                                       " clashes with the store's own column of that name");
      if (!Contains(obs_columns, name))
        return Status::NotFound("no obs column " + Quote(name) + " for --groupby" +
                                SuggestionSuffix(name, obs_columns));
      CC_ASSIGN_OR_RETURN(Column col, file.ReadObsColumn(name));
      plan->groupby.push_back(name);
      plan->columns.push_back(std::move(col));
    }
    return Status::Ok();
  }
  for (const auto& name : obs_columns) {
    if (name == plan->cell_type_column || name == "dataset" || name == "cell_type") continue;
    CC_ASSIGN_OR_RETURN(Column col, file.ReadObsColumn(name));
    int64_t distinct = col.CountDistinctPresent();
    if (!Groupable(col) || distinct < 2 || distinct > kAutoGroupbyMaxValues) continue;
    plan->groupby.push_back(name);
    plan->columns.push_back(std::move(col));
  }
  return Status::Ok();
}

Result<DatasetPlan> Plan(const DatasetInput& input, const BuildOptions& options,
                         const BuildCallbacks& callbacks) {
  DatasetPlan plan;
  plan.input = input;
  (void)::stat(input.path.c_str(), &plan.source_stat);  // a missing file fails in Open
  CC_ASSIGN_OR_RETURN(plan.file, File::Open(input.path));
  const File& file = *plan.file;
  CC_ASSIGN_OR_RETURN(plan.matrix, file.ResolveMatrix(options.matrix));
  if (plan.matrix.stored == 0 || file.n_obs() == 0)
    return Status::InvalidArgument("matrix " + Quote(plan.matrix.path) +
                                   " has no stored values: nothing to aggregate");
  CC_ASSIGN_OR_RETURN(auto obs, file.ObsInfo());
  CC_ASSIGN_OR_RETURN(plan.cell_type_column, ChooseCellType(file, obs.column_names, options));
  CC_ASSIGN_OR_RETURN(Column cell_type, file.ReadObsColumn(plan.cell_type_column));
  plan.columns.push_back(std::move(cell_type));
  CC_RETURN_IF_ERROR(ChooseGroupby(&plan, obs.column_names, options));

  CC_ASSIGN_OR_RETURN(auto var, file.VarInfo(plan.matrix.path));
  if (!options.gene_symbols.empty()) {
    if (!Contains(var.column_names, options.gene_symbols))
      return Status::NotFound("no var column " + Quote(options.gene_symbols) +
                              " for --gene-symbols" +
                              SuggestionSuffix(options.gene_symbols, var.column_names));
    plan.symbols_column = options.gene_symbols;
  } else {
    for (const auto& c : kSymbolCandidates)
      if (Contains(var.column_names, c)) {
        plan.symbols_column = c;
        break;
      }
  }
  if (options.transform == "auto") {
    CC_ASSIGN_OR_RETURN(auto sample, file.SampleValues(plan.matrix.path, kTransformSample));
    plan.transform = aggregate::ChooseTransform(sample);
    if (callbacks.note)
      callbacks.note("dataset " + Quote(input.name) + ": transform " +
                     aggregate::TransformName(plan.transform) + " (auto: the first values of " +
                     plan.matrix.path +
                     (plan.transform == Transform::kNone
                          ? " are not all non-negative integers)"
                          : " are non-negative integers, i.e. counts)"));
  } else {
    CC_ASSIGN_OR_RETURN(plan.transform, aggregate::ParseTransform(options.transform));
  }
  return plan;
}

// anndata's var_names_make_unique: later duplicates become NAME-1, NAME-2, ...
std::vector<std::string> MakeUnique(std::vector<std::string> names, int64_t* renamed) {
  std::unordered_set<std::string> taken(names.begin(), names.end());
  std::unordered_map<std::string, int> seen;
  *renamed = 0;
  for (auto& n : names) {
    int& count = seen[n];
    if (count++ == 0) continue;
    std::string candidate;
    do {
      candidate = n + "-" + std::to_string(count - 1);
      if (taken.count(candidate)) ++count;
    } while (taken.count(candidate));
    taken.insert(candidate);
    n = candidate;
    ++*renamed;
  }
  return names;
}

struct Aggregation {
  aggregate::Grouping grouping;
  std::vector<int64_t> indptr;
  std::vector<int32_t> group;
  std::vector<uint32_t> nnz;
  std::vector<double> sum, sumsq;
};

class ProgressCounter {
 public:
  ProgressCounter(const BuildCallbacks& cb, int64_t done, int64_t total)
      : cb_(cb), done_(done), total_(total) {}
  void Add(const std::string& dataset, int64_t cells) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ += cells;
    if (cb_.progress) cb_.progress({dataset, std::min(done_, total_), total_});
  }
  int64_t done() const { return done_; }

 private:
  const BuildCallbacks& cb_;
  std::mutex mu_;
  int64_t done_, total_;
};

std::string DescribeBad(const DatasetPlan& plan, const aggregate::BadValue& bad,
                        const std::vector<std::string>& genes) {
  auto cells = plan.file->ReadObsIndex();
  std::string cell = cells.ok() && bad.cell < static_cast<int64_t>(cells->size())
                         ? Quote((*cells)[bad.cell])
                         : "#" + std::to_string(bad.cell);
  std::string gene = bad.gene < static_cast<int64_t>(genes.size()) ? Quote(genes[bad.gene])
                                                                   : "#" + std::to_string(bad.gene);
  std::string where = "dataset " + Quote(plan.input.name) + ", cell " + cell + " (row " +
                      std::to_string(bad.cell) + "), gene " + gene;
  if (!std::isfinite(bad.raw))
    return where + ": the matrix holds " + FormatPythonFloat(bad.raw) +
           "; cellcube aggregates only finite values (fix or drop it in the file)";
  return where + ": value " + FormatPythonFloat(bad.raw) + " becomes " +
         FormatPythonFloat(bad.transformed) + " under " + aggregate::TransformName(plan.transform) +
         "; choose another --transform (e.g. none)";
}

// Each cell's total over all genes, for cp10k of a matrix read by columns: one pass
// over every block on `threads` workers, each with its own totals.
Result<std::vector<double>> RowTotals(const DatasetPlan& plan, const h5ad::MatrixStream& stream,
                                      const std::vector<std::string>& genes, int threads) {
  std::vector<std::vector<double>> partial(threads, std::vector<double>(plan.file->n_obs(), 0.0));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  Status first_error;
  std::mutex error_mu;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      SparseBlock block;
      for (int64_t i = next++; i < stream.num_blocks() && !failed; i = next++) {
        Status s = stream.ReadBlock(i, &block);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!failed.exchange(true)) first_error = s;
          return;
        }
        if (auto bad = aggregate::AddColumnBlockToRowTotals(block, &partial[t])) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!failed.exchange(true))
            first_error = Status::InvalidArgument(DescribeBad(plan, *bad, genes));
          return;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed) return first_error;
  for (int t = 1; t < threads; ++t)
    for (size_t i = 0; i < partial[0].size(); ++i) partial[0][i] += partial[t][i];
  return std::move(partial[0]);
}

Result<Aggregation> Aggregate(const DatasetPlan& plan, const std::vector<std::string>& genes,
                              const BuildOptions& options, int threads, ProgressCounter* progress) {
  Aggregation out;
  std::vector<const std::vector<int32_t>*> codes;
  std::vector<std::string> names;
  std::vector<int64_t> n_values;
  for (const auto& c : plan.columns) {
    codes.push_back(&c.codes);
    names.push_back(c.name);
    n_values.push_back(c.CountDistinctPresent());
  }
  auto grouping = aggregate::GroupCells(codes, names, n_values, options.max_groups);
  if (!grouping.ok()) return grouping.status().WithContext("dataset " + Quote(plan.input.name));
  out.grouping = std::move(grouping).value();
  const int32_t n_groups = out.grouping.n_groups();
  const auto n_genes = static_cast<int32_t>(plan.matrix.n_cols);
  h5ad::StreamOptions stream_options;
  stream_options.direct_reads = options.direct_reads;
  CC_ASSIGN_OR_RETURN(auto stream, plan.file->StreamMatrix(plan.matrix.path, stream_options));

  aggregate::CellContext cells;
  cells.group_of_cell = &out.grouping.group_of_cell;
  cells.transform = plan.transform;
  std::vector<double> scale;
  if (plan.transform == Transform::kCp10kLog1p && !stream->by_rows()) {
    CC_ASSIGN_OR_RETURN(scale, RowTotals(plan, *stream, genes, threads));
    for (double& s : scale) s = aggregate::Cp10kScale(s);
    cells.cell_scale = &scale;
  }
  // Accumulators of all workers fit the budget; past it, genes are done in passes.
  const uint64_t per_gene = Accumulator::BytesFor(n_groups, 1) * static_cast<uint64_t>(threads);
  const auto genes_per_pass = static_cast<int32_t>(std::clamp<uint64_t>(
      options.memory_budget / std::max<uint64_t>(1, per_gene), 1, std::max(1, n_genes)));
  const int64_t n_cells = plan.file->n_obs();
  out.indptr.assign(1, 0);
  for (int32_t lo = 0; lo < std::max(1, n_genes); lo += genes_per_pass) {
    const int32_t hi = std::min(n_genes, lo + genes_per_pass);
    const bool last_pass = hi >= n_genes;
    std::vector<Accumulator> accs;
    for (int t = 0; t < threads; ++t) accs.emplace_back(n_groups, lo, hi);
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    Status first_error;
    std::mutex error_mu;
    auto fail = [&](Status s) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!failed.exchange(true)) first_error = std::move(s);
    };
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        SparseBlock block;
        for (int64_t i = next++; i < stream->num_blocks() && !failed; i = next++) {
          if (Status s = stream->ReadBlock(i, &block); !s.ok()) return fail(s);
          if (auto bad = accs[t].Add(block, stream->by_rows(), cells))
            return fail(Status::InvalidArgument(DescribeBad(plan, *bad, genes)));
          if (last_pass)
            progress->Add(plan.input.name,
                          stream->by_rows() ? block.major_count
                                            : block.major_count * n_cells / std::max(1, n_genes));
        }
      });
    }
    for (auto& w : workers) w.join();
    if (failed) return first_error;
    for (int t = 1; t < threads; ++t) accs[0].Merge(accs[t]);
    const Accumulator& acc = accs[0];
    for (int32_t g = lo; g < hi; ++g) {
      for (int32_t grp = 0; grp < n_groups; ++grp) {
        const size_t slot = acc.Slot(grp, g);
        if (acc.sumsq()[slot] == 0) continue;  // no nonzero value in this group
        out.group.push_back(grp);
        out.nnz.push_back(acc.nnz()[slot]);
        out.sum.push_back(acc.sum()[slot]);
        out.sumsq.push_back(acc.sumsq()[slot]);
      }
      out.indptr.push_back(static_cast<int64_t>(out.group.size()));
    }
  }
  return out;
}

Result<StoreData> BuildOne(const DatasetPlan& plan, const BuildOptions& options,
                           const BuildCallbacks& callbacks, int threads,
                           ProgressCounter* progress) {
  const File& file = *plan.file;
  CC_ASSIGN_OR_RETURN(auto raw_ids, file.ReadVarIndex(plan.matrix.path));
  int64_t renamed = 0;
  std::vector<std::string> genes = MakeUnique(std::move(raw_ids), &renamed);
  if (renamed && callbacks.note)
    callbacks.note("dataset " + Quote(plan.input.name) + ": " + std::to_string(renamed) +
                   " duplicate gene ids made unique (GENE-1, GENE-2, ...)");
  CC_ASSIGN_OR_RETURN(Aggregation agg, Aggregate(plan, genes, options, threads, progress));

  StoreData s;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{plan.input.name}, plan.columns[0].labels};
  s.codes = {std::vector<int32_t>(agg.grouping.n_cells.size(), 0), agg.grouping.group_codes[0]};
  for (size_t c = 1; c < plan.columns.size(); ++c) {
    s.columns.push_back(plan.columns[c].name);
    s.labels.push_back(plan.columns[c].labels);
    s.codes.push_back(agg.grouping.group_codes[c]);
  }
  s.n_cells = agg.grouping.n_cells;
  s.gene_symbols.assign(genes.size(), "");
  if (!plan.symbols_column.empty()) {
    CC_ASSIGN_OR_RETURN(Column sym, file.ReadVarColumn(plan.symbols_column, plan.matrix.path));
    for (size_t g = 0; g < genes.size(); ++g)
      if (sym.codes[g] >= 0) s.gene_symbols[g] = sym.labels[sym.codes[g]];
  }
  s.gene_ids = std::move(genes);
  s.indptr = std::move(agg.indptr);
  s.group = std::move(agg.group);
  s.nnz = std::move(agg.nnz);
  s.sum = std::move(agg.sum);
  s.sumsq = std::move(agg.sumsq);

  DatasetRecord r;
  r.name = plan.input.name;
  r.source = plan.input.path;
  struct stat st {};
  if (::stat(plan.input.path.c_str(), &st) == 0) {
    r.source_size = st.st_size;
    r.source_mtime = st.st_mtime;
  }
  r.n_cells = file.n_obs();
  r.n_genes = s.n_genes();
  r.n_groups = s.n_groups();
  r.matrix = plan.matrix.path;
  r.transform = aggregate::TransformName(plan.transform);
  r.cell_type_column = plan.cell_type_column;
  r.groupby = plan.groupby;
  r.gene_symbols_column = plan.symbols_column;
  r.measured_genes.resize(static_cast<size_t>(s.n_genes()));
  for (int32_t g = 0; g < static_cast<int32_t>(s.n_genes()); ++g) r.measured_genes[g] = g;
  s.datasets.push_back(std::move(r));
  // Everything of this input has been read: it must not have changed meanwhile.
  CC_RETURN_IF_ERROR(CheckSourceUnchanged(plan));
  return s;
}

// Errors name the input they come from, once.
Status NamingInput(const Status& s, const std::string& path) {
  if (s.ok() || s.message().find(Quote(path)) != std::string::npos) return s;
  return s.WithContext(Quote(path));
}

}  // namespace

Result<StoreData> BuildStore(const std::vector<DatasetInput>& inputs, const BuildOptions& options,
                             const BuildCallbacks& callbacks) {
  if (inputs.empty()) return Status::Usage("no input .h5ad files given");
  std::unordered_set<std::string> names;
  for (const auto& in : inputs)
    if (!names.insert(in.name).second)
      return Status::InvalidArgument("two inputs are named " + Quote(in.name) +
                                     "; name them apart with NAME=PATH");
  // Plan every input first, so a bad file fails before hours of work on the others.
  std::vector<DatasetPlan> plans;
  int64_t total_cells = 0;
  for (const auto& in : inputs) {
    auto plan = Plan(in, options, callbacks);
    if (!plan.ok()) return NamingInput(plan.status(), in.path);
    total_cells += plan->file->n_obs();
    plans.push_back(std::move(plan).value());
  }
  const int threads = options.threads > 0
                          ? options.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  ProgressCounter progress(callbacks, 0, total_cells);
  std::vector<StoreData> parts;
  for (auto& plan : plans) {
    auto part = BuildOne(plan, options, callbacks, threads, &progress);
    if (!part.ok()) {
      // A read error in a file that changed underneath is reported as the change.
      if (Status changed = CheckSourceUnchanged(plan); !changed.ok()) return changed;
      return NamingInput(part.status(), plan.input.path);
    }
    parts.push_back(std::move(part).value());
    plan.file.reset();  // close the file: its work is done
  }
  std::vector<const StoreData*> views;
  for (const auto& p : parts) views.push_back(&p);
  return Concatenate(views);
}

}  // namespace cellcube
