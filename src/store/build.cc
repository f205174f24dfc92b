// Building a store from .h5ad files: plan every input (columns, matrix, transform,
// genes), then aggregate one dataset at a time on every thread into a temporary file
// beside the output, and stream the entries into the store (SPEC §10: bounded memory,
// deterministic).
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "aggregate/accumulator.h"
#include "aggregate/groupby_choice.h"
#include "aggregate/grouping.h"
#include "aggregate/transform.h"
#include "cellcube/h5ad.h"
#include "cellcube/store.h"
#include "store/block_pipeline.h"
#include "store/meta_builder.h"
#include "store/spill.h"
#include "store/store_source.h"
#include "store/store_stream.h"
#include "store/temp_output.h"
#include "util/isolate.h"
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
constexpr int64_t kTransformSample = 10000;
// How a dataset's aggregation spends the memory bound (SPEC §10).
struct MemoryPlan {
  int slots = 1;             // blocks held at once (read ahead or being added)
  int64_t block_values = 0;  // values per block: ~16 bytes each while held
  uint64_t accumulator = 0;  // bytes for the accumulator of one gene pass
};

MemoryPlan PlanMemory(uint64_t limit, int threads) {
  // What the process needs besides blocks and accumulators: code, metadata, thread
  // stacks, the reader's chunk buffers, the spill buffer.
  constexpr uint64_t kBase = uint64_t{48} << 20;
  constexpr uint64_t kBytesPerValue = 20;  // value, minor index, reader scratch
  MemoryPlan plan;
  plan.slots = 2 * threads + 1;
  // Blocks get at most an eighth of the bound, a million values each at most.
  plan.block_values = static_cast<int64_t>(
      std::clamp<uint64_t>(limit / 8 / kBytesPerValue / static_cast<uint64_t>(plan.slots),
                           uint64_t{1} << 14, uint64_t{1} << 20));
  const uint64_t blocks = static_cast<uint64_t>(plan.slots * plan.block_values) * kBytesPerValue;
  const uint64_t floor = uint64_t{4} << 20;
  plan.accumulator = limit > kBase + blocks + floor ? (limit - kBase - blocks) * 3 / 4 : floor;
  return plan;
}

// Everything decided about one input before its matrix is read. `file` and `columns`
// are held only while planning; the aggregation opens the file again, so a build of
// any number of inputs holds one file open at a time.
struct DatasetPlan {
  DatasetInput input;
  std::unique_ptr<File> file;
  h5ad::MatrixInfo matrix;
  std::string cell_type_column;
  std::vector<std::string> groupby;
  std::vector<Column> columns;  // cell type, then groupby (while planning)
  std::string symbols_column;
  Transform transform = Transform::kNone;
  struct stat source_stat {};  // the input as it was when planned, before it was opened
  int64_t n_obs = 0;
  std::vector<int32_t> gene_map;  // the matrix's genes -> the store's
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

// The group-by columns of one dataset (SPEC §5, §10; aggregate/groupby_choice.h): an
// explicit --groupby as given, with a warning note when its groups average fewer than 5
// cells; else the default, with a note naming the columns it left out or dropped.
Status ChooseGroupby(DatasetPlan* plan, const std::vector<std::string>& obs_columns,
                     const BuildOptions& options, const BuildCallbacks& callbacks) {
  const File& file = *plan->file;
  const int64_t n_cells = file.n_obs();
  const std::string dataset = "dataset " + Quote(plan->input.name) + ": ";
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
    std::vector<aggregate::GroupbyCandidate> given;
    for (size_t c = 1; c < plan->columns.size(); ++c) {
      const Column& col = plan->columns[c];
      given.push_back({col.name, &col.codes, col.CountDistinctPresent(), Groupable(col)});
    }
    CC_ASSIGN_OR_RETURN(std::string warning,
                        aggregate::SmallGroupsWarning(n_cells, plan->columns[0].codes, given));
    if (!warning.empty() && callbacks.note) callbacks.note("warning: " + dataset + warning);
    return Status::Ok();
  }
  // Every obs column is a candidate; only the codes of those the choice may take are
  // kept (numbers and identifiers can be large, and are never taken).
  std::vector<aggregate::GroupbyCandidate> candidates;
  std::vector<Column> kept;
  std::vector<size_t> kept_of;  // per candidate: its index in `kept`, or SIZE_MAX
  for (const auto& name : obs_columns) {
    if (name == plan->cell_type_column || name == "dataset" || name == "cell_type") continue;
    CC_ASSIGN_OR_RETURN(Column col, file.ReadObsColumn(name));
    aggregate::GroupbyCandidate cand{name, nullptr, col.CountDistinctPresent(), Groupable(col)};
    kept_of.push_back(SIZE_MAX);
    if (cand.groupable && cand.n_values >= 2 &&
        !aggregate::IsIdentifierLike(cand.n_values, n_cells)) {
      kept_of.back() = kept.size();
      kept.push_back(std::move(col));
    }
    candidates.push_back(std::move(cand));
  }
  for (size_t i = 0; i < candidates.size(); ++i)
    if (kept_of[i] != SIZE_MAX) candidates[i].codes = &kept[kept_of[i]].codes;
  CC_ASSIGN_OR_RETURN(aggregate::GroupbyChoice choice,
                      aggregate::ChooseDefaultGroupby(n_cells, plan->columns[0].codes, candidates));
  if (!choice.left_out.empty() && callbacks.note)
    callbacks.note(dataset + aggregate::DescribeGroupbyChoice(choice, candidates, n_cells));
  for (size_t i : choice.chosen) {
    plan->groupby.push_back(candidates[i].name);
    plan->columns.push_back(std::move(kept[kept_of[i]]));
  }
  return Status::Ok();
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

// The dataset's gene ids, made unique as anndata does.
Result<std::vector<std::string>> GeneIds(const DatasetPlan& plan, const File& file,
                                         const BuildCallbacks* callbacks) {
  CC_ASSIGN_OR_RETURN(auto raw_ids, file.ReadVarIndex(plan.matrix.path));
  int64_t renamed = 0;
  std::vector<std::string> genes = MakeUnique(std::move(raw_ids), &renamed);
  if (renamed && callbacks && callbacks->note)
    callbacks->note("dataset " + Quote(plan.input.name) + ": " + std::to_string(renamed) +
                    " duplicate gene ids made unique (GENE-1, GENE-2, ...)");
  return genes;
}

Status PlanGenes(DatasetPlan* plan, const BuildCallbacks& callbacks, MetaBuilder* meta) {
  const File& file = *plan->file;
  CC_ASSIGN_OR_RETURN(std::vector<std::string> genes, GeneIds(*plan, file, &callbacks));
  std::vector<std::string> symbols(genes.size());
  if (!plan->symbols_column.empty()) {
    CC_ASSIGN_OR_RETURN(Column sym, file.ReadVarColumn(plan->symbols_column, plan->matrix.path));
    for (size_t g = 0; g < genes.size() && g < sym.codes.size(); ++g)
      if (sym.codes[g] >= 0) symbols[g] = sym.labels[sym.codes[g]];
  }
  plan->gene_map = meta->AddGenes(genes, symbols);
  return Status::Ok();
}

Result<DatasetPlan> Plan(const DatasetInput& input, const BuildOptions& options,
                         const BuildCallbacks& callbacks, MetaBuilder* meta) {
  DatasetPlan plan;
  plan.input = input;
  (void)::stat(input.path.c_str(), &plan.source_stat);  // a missing file fails in Open
  CC_ASSIGN_OR_RETURN(plan.file, File::Open(input.path));
  const File& file = *plan.file;
  plan.n_obs = file.n_obs();
  CC_ASSIGN_OR_RETURN(plan.matrix, file.ResolveMatrix(options.matrix));
  if (plan.matrix.stored == 0 || file.n_obs() == 0)
    return Status::InvalidArgument("matrix " + Quote(plan.matrix.path) +
                                   " has no stored values: nothing to aggregate");
  CC_ASSIGN_OR_RETURN(auto obs, file.ObsInfo());
  CC_ASSIGN_OR_RETURN(plan.cell_type_column, ChooseCellType(file, obs.column_names, options));
  CC_ASSIGN_OR_RETURN(Column cell_type, file.ReadObsColumn(plan.cell_type_column));
  plan.columns.push_back(std::move(cell_type));
  CC_RETURN_IF_ERROR(ChooseGroupby(&plan, obs.column_names, options, callbacks));

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
  CC_RETURN_IF_ERROR(PlanGenes(&plan, callbacks, meta));
  plan.columns.clear();  // read again when aggregating: planning many inputs stays small
  plan.file.reset();     // and holds no file open
  return plan;
}

class ProgressCounter {
 public:
  ProgressCounter(const BuildCallbacks& cb, int64_t done, int64_t total)
      : cb_(cb), done_(done), total_(total) {}
  void Add(const std::string& dataset, int64_t cells) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ += cells;
    if (cb_.progress) cb_.progress({dataset, std::min(done_, total_), total_});
  }

 private:
  const BuildCallbacks& cb_;
  std::mutex mu_;
  int64_t done_, total_;
};

std::string DescribeBad(const DatasetPlan& plan, const File& file, const aggregate::BadValue& bad) {
  auto cells = file.ReadObsIndex();
  std::string cell = cells.ok() && bad.cell < static_cast<int64_t>(cells->size())
                         ? Quote((*cells)[bad.cell])
                         : "#" + std::to_string(bad.cell);
  auto genes = GeneIds(plan, file, nullptr);
  std::string gene = genes.ok() && bad.gene < static_cast<int64_t>(genes->size())
                         ? Quote((*genes)[bad.gene])
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

// One dataset being aggregated: its file, cells, and genes in the store's order.
struct DatasetWork {
  explicit DatasetWork(const DatasetPlan& p) : plan(p) {}
  const DatasetPlan& plan;
  std::unique_ptr<File> file;
  std::unique_ptr<h5ad::MatrixStream> stream;
  aggregate::Grouping grouping;
  std::vector<int32_t> rank;     // matrix gene -> position in the store's gene order
  std::vector<int32_t> gene_at;  // position -> matrix gene
  std::vector<double> scale;     // per cell, for cp10k of a matrix read by columns
  aggregate::CellContext cells;
  int threads = 1;
  BlockRing* ring = nullptr;  // the build's blocks, reused dataset after dataset

  Status Bad(const aggregate::BadValue& bad) const {
    return Status::InvalidArgument(DescribeBad(plan, *file, bad));
  }
};

Status GroupAndOrder(DatasetWork* w, const BuildOptions& options) {
  const DatasetPlan& plan = w->plan;
  std::vector<Column> columns;
  for (const std::string& name : [&] {
         std::vector<std::string> all{plan.cell_type_column};
         all.insert(all.end(), plan.groupby.begin(), plan.groupby.end());
         return all;
       }()) {
    CC_ASSIGN_OR_RETURN(Column col, w->file->ReadObsColumn(name));
    columns.push_back(std::move(col));
  }
  std::vector<const std::vector<int32_t>*> codes;
  std::vector<std::string> names;
  std::vector<int64_t> n_values;
  for (const auto& c : columns) {
    codes.push_back(&c.codes);
    names.push_back(c.name);
    n_values.push_back(c.CountDistinctPresent());
  }
  auto grouping = aggregate::GroupCells(codes, names, n_values, options.max_groups);
  if (!grouping.ok()) return grouping.status().WithContext("dataset " + Quote(plan.input.name));
  w->grouping = std::move(grouping).value();
  // Genes are aggregated and spilled in the store's order, so that writing the store
  // reads every dataset's runs front to back.
  const auto n_genes = static_cast<int32_t>(plan.gene_map.size());
  w->gene_at.resize(static_cast<size_t>(n_genes));
  std::iota(w->gene_at.begin(), w->gene_at.end(), 0);
  std::stable_sort(w->gene_at.begin(), w->gene_at.end(),
                   [&](int32_t a, int32_t b) { return plan.gene_map[a] < plan.gene_map[b]; });
  w->rank.resize(w->gene_at.size());
  bool identity = true;
  for (int32_t r = 0; r < n_genes; ++r) {
    w->rank[w->gene_at[r]] = r;
    identity = identity && w->gene_at[r] == r;
  }
  w->cells.group_of_cell = &w->grouping.group_of_cell;
  w->cells.transform = plan.transform;
  w->cells.gene_rank = identity ? nullptr : &w->rank;
  return Status::Ok();
}

// Each cell's total over all genes, for cp10k of a matrix read by columns: every worker
// sees every block in order and adds the cells it owns, so totals do not depend on the
// number of threads.
Status RowTotals(DatasetWork* w) {
  std::vector<double> totals(static_cast<size_t>(w->plan.n_obs), 0.0);
  CC_RETURN_IF_ERROR(
      BroadcastBlocks(*w->stream, w->threads, *w->ring, [&](int worker, const SparseBlock& block) {
        if (auto bad = aggregate::AddColumnBlockToRowTotals(block, worker, w->threads, &totals))
          return w->Bad(*bad);
        return Status::Ok();
      }));
  for (double& t : totals) t = aggregate::Cp10kScale(t);
  w->scale = std::move(totals);
  w->cells.cell_scale = &w->scale;
  return Status::Ok();
}

// Adds the matrix to `acc` (one pass over the file).
Status Accumulate(DatasetWork* w, Accumulator* acc, bool count_progress,
                  ProgressCounter* progress) {
  const std::string& name = w->plan.input.name;
  if (w->stream->by_rows()) {
    return BroadcastBlocks(*w->stream, w->threads, *w->ring,
                           [&](int worker, const SparseBlock& block) {
                             if (auto bad = acc->AddRows(block, w->cells, worker, w->threads))
                               return w->Bad(*bad);
                             if (worker == 0 && count_progress)
                               progress->Add(name, block.major_count);
                             return Status::Ok();
                           });
  }
  const int64_t n_genes = std::max<int64_t>(1, w->plan.matrix.n_cols);
  return ShareBlocks(*w->stream, w->threads, *w->ring, [&](int, const SparseBlock& block) {
    if (auto bad = acc->AddColumns(block, w->cells)) return w->Bad(*bad);
    if (count_progress) progress->Add(name, block.major_count * w->plan.n_obs / n_genes);
    return Status::Ok();
  });
}

// Writes the stored slots of `acc`, gene by gene, to the spill file.
Status SpillAccumulator(const DatasetWork& w, const Accumulator& acc, SpillFile* spill) {
  std::vector<SpillRecord> run;
  int32_t current = -1;
  Status status;
  auto flush = [&] {
    if (current >= 0 && !run.empty() && status.ok())
      status = spill->AppendRun(static_cast<uint32_t>(w.gene_at[current]), run.data(),
                                static_cast<uint32_t>(run.size()));
    run.clear();
  };
  acc.ForEachStored([&](int32_t gene, int32_t group, const aggregate::SlotStats& s) {
    if (gene != current) {
      flush();
      current = gene;
    }
    run.push_back({group, s.nnz, s.sum, s.sumsq});
  });
  flush();
  return status;
}

// The dataset's groups and record, for the store's metadata.
StoreData DatasetPart(const DatasetWork& w, const std::vector<Column>& labels) {
  const DatasetPlan& plan = w.plan;
  StoreData s;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{plan.input.name}, labels[0].labels};
  s.codes = {std::vector<int32_t>(w.grouping.n_cells.size(), 0), w.grouping.group_codes[0]};
  for (size_t c = 1; c < labels.size(); ++c) {
    s.columns.push_back(labels[c].name);
    s.labels.push_back(labels[c].labels);
    s.codes.push_back(w.grouping.group_codes[c]);
  }
  s.n_cells = w.grouping.n_cells;
  DatasetRecord r;
  r.name = plan.input.name;
  r.source = plan.input.path;
  r.source_size = plan.source_stat.st_size;
  r.source_mtime = plan.source_stat.st_mtime;
  r.n_cells = plan.n_obs;
  r.n_genes = static_cast<int64_t>(plan.gene_map.size());
  r.n_groups = s.n_groups();
  r.matrix = plan.matrix.path;
  r.transform = aggregate::TransformName(plan.transform);
  r.cell_type_column = plan.cell_type_column;
  r.groupby = plan.groupby;
  r.gene_symbols_column = plan.symbols_column;
  r.measured_genes.resize(plan.gene_map.size());
  std::iota(r.measured_genes.begin(), r.measured_genes.end(), 0);
  s.datasets.push_back(std::move(r));
  return s;
}

// Genes per pass so that the accumulator fits `budget`.
int32_t GenesPerPass(int32_t n_groups, int32_t n_genes, uint64_t budget) {
  const uint64_t per_gene = std::max<uint64_t>(1, Accumulator::BytesFor(n_groups, 8) / 8);
  const uint64_t fit = budget / per_gene / 8 * 8;  // whole cache lines of slots
  return static_cast<int32_t>(std::clamp<uint64_t>(fit, 8, std::max<int32_t>(8, n_genes)));
}

// Aggregates one dataset into `spill` and returns its groups for the metadata.
Result<StoreData> AggregateDataset(const DatasetPlan& plan, const BuildOptions& options,
                                   int threads, BlockRing* ring, SpillFile* spill,
                                   ProgressCounter* progress) {
  NoteActivity("aggregating dataset " + Quote(plan.input.name));
  DatasetWork w(plan);
  w.threads = threads;
  CC_ASSIGN_OR_RETURN(w.file, File::Open(plan.input.path));
  CC_RETURN_IF_ERROR(GroupAndOrder(&w, options));
  h5ad::StreamOptions stream_options;
  stream_options.direct_reads = options.direct_reads;
  const MemoryPlan memory = PlanMemory(options.memory_limit, threads);
  stream_options.target_values = memory.block_values;
  CC_ASSIGN_OR_RETURN(w.stream, w.file->StreamMatrix(plan.matrix.path, stream_options));
  w.ring = ring;
  if (plan.transform == Transform::kCp10kLog1p && !w.stream->by_rows())
    CC_RETURN_IF_ERROR(RowTotals(&w));
  const int32_t n_groups = w.grouping.n_groups();
  const auto n_genes = static_cast<int32_t>(plan.gene_map.size());
  const int32_t per_pass = GenesPerPass(n_groups, n_genes, memory.accumulator);
  for (int32_t lo = 0; lo < n_genes; lo += per_pass) {
    const int32_t hi = std::min(n_genes, lo + per_pass);
    Accumulator acc(n_groups, lo, hi);
    CC_RETURN_IF_ERROR(Accumulate(&w, &acc, /*count_progress=*/hi >= n_genes, progress));
    CC_RETURN_IF_ERROR(SpillAccumulator(w, acc, spill));
  }
  std::vector<Column> labels;  // the columns' names and values, for the metadata
  for (const std::string& name : [&] {
         std::vector<std::string> all{plan.cell_type_column};
         all.insert(all.end(), plan.groupby.begin(), plan.groupby.end());
         return all;
       }()) {
    CC_ASSIGN_OR_RETURN(Column col, w.file->ReadObsColumn(name));
    col.codes.clear();
    labels.push_back(std::move(col));
  }
  StoreData part = DatasetPart(w, labels);
  // Everything of this input has been read: it must not have changed meanwhile.
  CC_RETURN_IF_ERROR(CheckSourceUnchanged(plan));
  return part;
}

// Errors name the input they come from, once.
Status NamingInput(const Status& s, const std::string& path) {
  if (s.ok() || s.message().find(Quote(path)) != std::string::npos) return s;
  return s.WithContext(Quote(path));
}

// File descriptors this process may hold (the soft limit, raised to the hard one).
size_t OpenFilesAllowed() {
  struct rlimit r {};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &r);
    (void)::getrlimit(RLIMIT_NOFILE, &r);
  }
  if (r.rlim_cur == RLIM_INFINITY) return size_t{1} << 20;
  const auto soft = static_cast<size_t>(r.rlim_cur);
  return soft > 128 ? soft - 64 : soft / 2;  // room for HDF5, the output, stdio
}

int ThreadsFor(const BuildOptions& options) {
  return options.threads > 0 ? options.threads
                             : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Window bytes per part for reading `parts` parts back at once.
size_t WindowBytes(uint64_t memory_limit, size_t parts, int arrays) {
  const uint64_t total = std::min<uint64_t>(memory_limit / 4, uint64_t{512} << 20);
  const uint64_t each = total / std::max<size_t>(1, parts) / static_cast<uint64_t>(arrays);
  return static_cast<size_t>(std::clamp<uint64_t>(each, uint64_t{16} << 10, uint64_t{8} << 20));
}

StoreSummary Summarise(const StoreData& meta, int64_t entries) {
  StoreSummary s;
  s.datasets = static_cast<int64_t>(meta.datasets.size());
  for (const auto& d : meta.datasets) s.cells += d.n_cells;
  s.groups = meta.n_groups();
  s.genes = meta.n_genes();
  s.entries = entries;
  return s;
}

// Build and add: an optional existing store first, then the inputs, aggregated.
Result<StoreSummary> BuildInto(StoreFileSource* existing, StoreData existing_meta,
                               const std::vector<DatasetInput>& inputs, const BuildOptions& options,
                               const BuildCallbacks& callbacks, TempOutput& out) {
  if (inputs.empty()) return Status::Usage("no input .h5ad files given");
  std::unordered_set<std::string> names;
  for (const auto& d : existing_meta.datasets) names.insert(d.name);
  for (const auto& in : inputs)
    if (!names.insert(in.name).second)
      return Status::InvalidArgument(
          existing && std::any_of(existing_meta.datasets.begin(), existing_meta.datasets.end(),
                                  [&](const DatasetRecord& d) { return d.name == in.name; })
              ? "dataset " + Quote(in.name) + " is already in " + Quote(out.target()) +
                    "; remove it first ('cellcube remove') or add it under another name with "
                    "NAME=FILE.h5ad"
              : "two inputs are named " + Quote(in.name) + "; name them apart with NAME=PATH");
  MetaBuilder meta;
  std::vector<int32_t> existing_map;
  int64_t n_entries = 0;
  if (existing) {
    existing_map = meta.AddGenes(existing_meta.gene_ids, existing_meta.gene_symbols);
    CC_RETURN_IF_ERROR(meta.AddGroups(existing_meta, existing_map));
    n_entries = existing->n_entries();
    existing_meta = StoreData();  // its strings are in `meta` now
  }
  // Plan every input first, so a bad file fails before hours of work on the others.
  std::vector<DatasetPlan> plans;
  int64_t total_cells = 0;
  for (const auto& in : inputs) {
    NoteActivity("checking " + Quote(in.path));
    auto plan = Plan(in, options, callbacks, &meta);
    if (!plan.ok()) return NamingInput(plan.status(), in.path);
    total_cells += plan->n_obs;
    plans.push_back(std::move(plan).value());
  }
  const int threads = ThreadsFor(options);
  ProgressCounter progress(callbacks, 0, total_cells);
  BlockRing ring(PlanMemory(options.memory_limit, threads).slots);
  CC_ASSIGN_OR_RETURN(auto spill, SpillFile::Create(out.dir()));
  std::vector<uint64_t> bounds{spill->offset()};
  std::vector<int64_t> group_offsets;
  for (auto& plan : plans) {
    group_offsets.push_back(meta.n_groups());
    auto part = AggregateDataset(plan, options, threads, &ring, spill.get(), &progress);
    if (!part.ok()) {
      // A read error in a file that changed underneath is reported as the change.
      if (Status changed = CheckSourceUnchanged(plan); !changed.ok()) return changed;
      return NamingInput(part.status(), plan.input.path);
    }
    CC_RETURN_IF_ERROR(meta.AddGroups(*part, plan.gene_map));
    bounds.push_back(spill->offset());
  }
  CC_RETURN_IF_ERROR(spill->Flush());
  n_entries += static_cast<int64_t>(spill->records());
  std::vector<std::unique_ptr<SpillSegment>> segments;
  std::vector<StreamedPart> parts;
  const size_t window = WindowBytes(options.memory_limit, plans.size() + (existing ? 1 : 0), 5);
  if (existing) {
    CC_RETURN_IF_ERROR(existing->Start(&existing_map, nullptr, window, true));
    parts.push_back({existing, 0});
  }
  for (size_t d = 0; d < plans.size(); ++d) {
    CC_ASSIGN_OR_RETURN(auto seg, SpillSegment::Open(spill->fd(), bounds[d], bounds[d + 1],
                                                     &plans[d].gene_map, window));
    parts.push_back({seg.get(), group_offsets[d]});
    segments.push_back(std::move(seg));
  }
  const StoreData store = meta.Finish();
  CC_RETURN_IF_ERROR(WriteStreamedStore(store, n_entries, parts, out, callbacks.write_progress));
  return Summarise(store, n_entries);
}

}  // namespace

Result<StoreSummary> BuildStoreFile(const std::vector<DatasetInput>& inputs,
                                    const BuildOptions& options, const BuildCallbacks& callbacks,
                                    const std::string& out) {
  if (inputs.empty()) return Status::Usage("no input .h5ad files given");
  CC_ASSIGN_OR_RETURN(auto output, TempOutput::Begin(out));
  return BuildInto(nullptr, StoreData(), inputs, options, callbacks, *output);
}

Result<StoreSummary> AddToStoreFile(const std::string& store,
                                    const std::vector<DatasetInput>& inputs,
                                    const BuildOptions& options, const BuildCallbacks& callbacks) {
  StoreData meta;
  CC_ASSIGN_OR_RETURN(auto existing, StoreFileSource::Open(store, &meta));
  CC_ASSIGN_OR_RETURN(auto output, TempOutput::Begin(store));
  return BuildInto(existing.get(), std::move(meta), inputs, options, callbacks, *output);
}

Result<StoreSummary> RemoveFromStoreFile(const std::string& store,
                                         const std::vector<std::string>& names,
                                         uint64_t memory_limit, const BuildCallbacks& callbacks) {
  StoreData meta;
  CC_ASSIGN_OR_RETURN(auto source, StoreFileSource::Open(store, &meta));
  CC_ASSIGN_OR_RETURN(Removal removal, PlanRemoval(meta, names));
  if (removal.meta.datasets.empty())
    return Status::InvalidArgument("removing every dataset would leave an empty store; delete '" +
                                   store + "' instead");
  meta = StoreData();
  CC_ASSIGN_OR_RETURN(auto output, TempOutput::Begin(store));
  // Count what stays (one pass), then stream it.
  const size_t window = WindowBytes(memory_limit, 1, 5);
  NoteActivity("counting the entries that stay in " + Quote(store));
  CC_RETURN_IF_ERROR(source->Start(&removal.new_gene, &removal.new_group, window, true));
  int64_t n_entries = 0;
  EntryBuffer scratch;
  while (source->next_gene() != kNoGene) {
    CC_RETURN_IF_ERROR(source->TakeRun(0, &scratch));
    n_entries += static_cast<int64_t>(scratch.size());
    scratch.Clear();
  }
  CC_RETURN_IF_ERROR(source->Start(&removal.new_gene, &removal.new_group, window, true));
  CC_RETURN_IF_ERROR(WriteStreamedStore(removal.meta, n_entries, {{source.get(), 0}}, *output,
                                        callbacks.write_progress));
  return Summarise(removal.meta, n_entries);
}

Result<StoreSummary> MergeStoreFiles(const std::vector<std::string>& stores, const std::string& out,
                                     uint64_t memory_limit, const BuildCallbacks& callbacks) {
  if (stores.empty()) return Status::Usage("merge needs at least one input store");
  CC_ASSIGN_OR_RETURN(auto output, TempOutput::Begin(out));
  MetaBuilder meta;
  std::vector<std::unique_ptr<StoreFileSource>> sources;
  std::vector<std::vector<int32_t>> gene_maps;
  std::vector<StreamedPart> parts;
  int64_t n_entries = 0;
  for (const auto& path : stores) {
    NoteActivity("reading the metadata of " + Quote(path));
    StoreData part;
    CC_ASSIGN_OR_RETURN(auto source, StoreFileSource::Open(path, &part));
    gene_maps.push_back(meta.AddGenes(part.gene_ids, part.gene_symbols));
    parts.push_back({source.get(), meta.n_groups()});
    CC_RETURN_IF_ERROR(meta.AddGroups(part, gene_maps.back()));
    n_entries += source->n_entries();
    sources.push_back(std::move(source));
  }
  // More stores than a process may hold open: each is opened for each window it reads.
  const bool keep_open = sources.size() <= OpenFilesAllowed() / 2;
  const size_t window = WindowBytes(memory_limit, sources.size(), 5);
  for (size_t i = 0; i < sources.size(); ++i)
    CC_RETURN_IF_ERROR(sources[i]->Start(&gene_maps[i], nullptr, window, keep_open));
  const StoreData store = meta.Finish();
  CC_RETURN_IF_ERROR(
      WriteStreamedStore(store, n_entries, parts, *output, callbacks.write_progress));
  return Summarise(store, n_entries);
}

}  // namespace cellcube
