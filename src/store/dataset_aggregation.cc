#include "store/dataset_aggregation.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <unordered_map>

#include "aggregate/accumulator.h"
#include "aggregate/grouping.h"
#include "aggregate/tiled_rows.h"
#include "histogram/record.h"
#include "util/isolate.h"
#include "util/parallel.h"
#include "util/text.h"

namespace cellcube {

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

namespace {

using aggregate::Accumulator;
using aggregate::HistogramSpec;
using aggregate::Transform;
using h5ad::Column;
using h5ad::File;

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
  if (bad.duplicate)
    return where +
           ": the matrix stores more than one value for this cell and gene (duplicate "
           "indices within a row), so its group would have more expressing cells than "
           "cells; fix the file (scipy: X.sum_duplicates())";
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
  std::vector<Column> columns;   // cell type, then group-by: names and values (codes freed)
  std::vector<int32_t> rank;     // matrix gene -> position in the store's gene order
  std::vector<int32_t> gene_at;  // position -> matrix gene
  std::vector<double> scale;     // per cell, for cp10k of a matrix read by columns
  aggregate::CellContext cells;
  int threads = 1;
  BlockRing* ring = nullptr;  // the build's blocks, reused dataset after dataset
  bool saw_negative = false;  // some transformed value was below 0
  std::optional<aggregate::HistogramSpec> histograms;  // absent: --no-histograms
  int64_t above_max = 0;  // values binned above the histograms' upper edge
  int passes = 0;         // passes over the matrix (more than one: a range of genes each)

  Status Bad(const aggregate::BadValue& bad) const {
    return Status::InvalidArgument(DescribeBad(plan, *file, bad));
  }
};

// Turns the values matching matched ontology terms into their terms' labels (the plan's
// renames; docs/ONTOLOGY.md): values that become one label become one category.
void ApplyRenames(const std::vector<std::pair<std::string, std::string>>& renames, Column* col) {
  if (renames.empty()) return;
  std::unordered_map<std::string, std::string> to(renames.begin(), renames.end());
  std::unordered_map<std::string, int32_t> index;
  std::vector<std::string> labels;
  std::vector<int32_t> remap(col->labels.size());
  for (size_t l = 0; l < col->labels.size(); ++l) {
    auto it = to.find(col->labels[l]);
    const std::string& label = it == to.end() ? col->labels[l] : it->second;
    auto [at, fresh] = index.emplace(label, static_cast<int32_t>(labels.size()));
    if (fresh) labels.push_back(label);
    remap[l] = at->second;
  }
  for (int32_t& code : col->codes)
    if (code >= 0) code = remap[static_cast<size_t>(code)];
  col->labels = std::move(labels);
}

Status GroupAndOrder(DatasetWork* w, const BuildOptions& options) {
  const DatasetPlan& plan = w->plan;
  std::vector<Column>& columns = w->columns;
  std::vector<std::string> grouping_columns{plan.cell_type_column};
  grouping_columns.insert(grouping_columns.end(), plan.groupby.begin(), plan.groupby.end());
  for (const std::string& name : grouping_columns) {
    CC_ASSIGN_OR_RETURN(Column col, w->file->ReadObsColumn(name));
    if (!plan.donor_column.empty() && name == plan.donor_column) col.name = "donor";
    if (columns.size() < plan.renames.size()) ApplyRenames(plan.renames[columns.size()], &col);
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
  for (Column& c : columns) std::vector<int32_t>().swap(c.codes);  // the grouping has them
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

// One block of genes' spilled runs, encoded by one thread: per gene its entries and
// their histogram records, appended to the spill file in gene order afterwards.
struct SpillBlock {
  std::vector<int32_t> genes;       // in order, those with entries
  std::vector<size_t> run_end;      // per gene: the end of its entries in `run`
  std::vector<size_t> records_end;  // per gene: the end of its records in `records`
  std::vector<SpillRecord> run;
  std::vector<uint8_t> records;
  Status status;  // the first error met encoding it

  void Clear() {
    genes.clear();
    run_end.clear();
    records_end.clear();
    run.clear();
    records.clear();
    status = Status::Ok();
  }
};

// Appends the stored slots of `acc` in genes [lo, hi) to `b`.
void EncodeSlots(const DatasetWork& w, const Accumulator& acc, int32_t lo, int32_t hi,
                 SpillBlock* b) {
  acc.ForEachStoredIn(lo, hi, [&](int32_t gene, int32_t group, const aggregate::SlotStats& s) {
    if (b->genes.empty() || b->genes.back() != gene) {
      if (!b->genes.empty()) {
        b->run_end.push_back(b->run.size());
        b->records_end.push_back(b->records.size());
      }
      b->genes.push_back(gene);
    }
    const int64_t n_cells = w.grouping.n_cells[static_cast<size_t>(group)];
    b->run.push_back({group, s.nnz, s.sum, aggregate::SlotM2(s, n_cells)});
    acc.AppendRecordOf(group, gene, &b->records);
  });
}

// Closes the last gene's run of `b`.
void FinishBlock(SpillBlock* b) {
  if (b->genes.empty() || b->run_end.size() == b->genes.size()) return;
  b->run_end.push_back(b->run.size());
  b->records_end.push_back(b->records.size());
}

// Appends an encoded block's runs to the spill file.
Status AppendBlock(const DatasetWork& w, const SpillBlock& b, SpillFile* spill) {
  CC_RETURN_IF_ERROR(b.status);
  for (size_t k = 0; k < b.genes.size(); ++k) {
    const size_t run_begin = k ? b.run_end[k - 1] : 0;
    const size_t rec_begin = k ? b.records_end[k - 1] : 0;
    CC_RETURN_IF_ERROR(
        spill->AppendRun(static_cast<uint32_t>(w.gene_at[b.genes[k]]), b.run.data() + run_begin,
                         static_cast<uint32_t>(b.run_end[k] - run_begin),
                         b.records.data() + rec_begin, b.records_end[k] - rec_begin));
  }
  return Status::Ok();
}

// Writes genes [begin, end) to the spill file, gene by gene: encode(worker, lo, hi, b)
// fills blocks of kBlockGenes genes (aligned to multiples of it) on every thread, and
// each block is appended as soon as the blocks before it are, by the thread that
// encoded it, while the others encode the next ones. The file is the same whatever
// the number of threads.
Status SpillInBlocks(
    const DatasetWork& w, int32_t begin, int32_t end, SpillFile* spill,
    const std::function<void(int worker, int32_t lo, int32_t hi, SpillBlock* b)>& encode) {
  constexpr int32_t kBlockGenes = 256;
  // A block holds whole tiles (SpillTiles): tiles are powers of two up to the largest.
  static_assert(kBlockGenes % aggregate::TiledRows::kMaxTileGenes == 0);
  if (begin >= end) return Status::Ok();
  const int workers = std::max(1, w.threads);
  const int32_t first = begin / kBlockGenes;
  const auto n_blocks = static_cast<size_t>((end - 1) / kBlockGenes - first + 1);
  std::vector<SpillBlock> blocks(static_cast<size_t>(workers));  // one per worker
  std::mutex mu;
  std::condition_variable turn_cv;
  size_t turn = 0;  // the next block to append
  Status status;    // the first error; later blocks are then skipped
  // Workers take blocks in increasing order, so the block whose turn it is is always
  // with a worker that waits for nothing: no deadlock, whatever the threads.
  ParallelFor(n_blocks, workers, 1, [&](int worker, size_t i) {
    const int32_t start = (first + static_cast<int32_t>(i)) * kBlockGenes;
    SpillBlock& b = blocks[static_cast<size_t>(worker)];
    b.Clear();
    encode(worker, std::max(begin, start), std::min(end, start + kBlockGenes), &b);
    FinishBlock(&b);
    std::unique_lock<std::mutex> lock(mu);
    turn_cv.wait(lock, [&] { return turn == i; });
    if (status.ok()) status = AppendBlock(w, b, spill);
    ++turn;
    turn_cv.notify_all();
  });
  return status;
}

// Writes the stored slots of `acc`, gene by gene, to the spill file.
Status SpillAccumulator(const DatasetWork& w, const Accumulator& acc, SpillFile* spill) {
  return SpillInBlocks(
      w, acc.gene_begin(), acc.gene_end(), spill,
      [&](int, int32_t lo, int32_t hi, SpillBlock* b) { EncodeSlots(w, acc, lo, hi, b); });
}

// Accumulates the tiles of `tiles`, each in a small accumulator of the worker's, and
// writes their stored slots to the spill file, gene by gene.
Status SpillTiles(const DatasetWork& w, const aggregate::TiledRows& tiles, int32_t begin,
                  int32_t end, SpillFile* spill) {
  const HistogramSpec* histograms = w.histograms ? &*w.histograms : nullptr;
  std::vector<std::unique_ptr<Accumulator>> accs(static_cast<size_t>(std::max(1, w.threads)));
  return SpillInBlocks(w, begin, end, spill,
                       [&](int worker, int32_t lo, int32_t hi, SpillBlock* b) {
                         auto& acc = accs[static_cast<size_t>(worker)];
                         if (!acc)
                           acc = std::make_unique<Accumulator>(w.grouping.n_groups(), 0,
                                                               tiles.tile_genes(), histograms);
                         for (int32_t t = tiles.TileOf(lo); t <= tiles.TileOf(hi - 1); ++t) {
                           if (auto bad = tiles.AccumulateTile(t, w.cells, acc.get())) {
                             b->status = w.Bad(*bad);
                             return;
                           }
                           const auto [tile_lo, tile_hi] = tiles.TileRange(t);
                           EncodeSlots(w, *acc, tile_lo, tile_hi, b);
                         }
                       });
}

// How `spec` of --matrix names a matrix path.
std::string MatrixOption(const std::string& path) {
  return path == "raw/X" || path == "raw.X" ? "raw" : path;
}

// The file's other matrices whose first values hold nothing below 0: what a dataset of
// scaled values could be built from instead (counts first, then other non-negative data).
std::string NonNegativeAlternatives(const File& file, const std::string& chosen) {
  std::vector<std::string> counts, other;
  for (const h5ad::MatrixInfo& m : file.matrices()) {
    if (m.path == chosen || m.stored == 0) continue;
    auto sample = file.SampleValues(m.path, 10000);
    if (!sample.ok() || sample->empty()) continue;
    const bool non_negative =
        std::all_of(sample->begin(), sample->end(), [](double v) { return v >= 0; });
    if (!non_negative) continue;
    const bool integers = aggregate::ChooseTransform(*sample) == Transform::kCp10kLog1p;
    (integers ? counts : other)
        .push_back("--matrix " + MatrixOption(m.path) + " (" + m.path +
                   (integers ? ", counts)" : ")"));
  }
  counts.insert(counts.end(), other.begin(), other.end());
  return Join(counts, " or ");
}

// The warning for a dataset whose transformed values went below 0.
std::string NegativeValuesWarning(const DatasetWork& w) {
  const std::string& matrix = w.plan.matrix.path;
  const std::string instead = NonNegativeAlternatives(*w.file, matrix);
  return "warning: dataset " + Quote(w.plan.input.name) + ": " + matrix +
         " holds values below 0 (scaled data, e.g. z-scores); nnz counts only values above 0, "
         "so frac and mean_expr mean little there, and answers leave its mean_expr empty. " +
         (instead.empty() ? "The file has no matrix without negative values (raw/X or a counts "
                            "layer) to build from instead"
                          : "Build it from " + instead + " instead");
}

// The dataset's groups and record, for the store's metadata.
StoreData DatasetPart(const DatasetWork& w) {
  const DatasetPlan& plan = w.plan;
  const std::vector<Column>& labels = w.columns;
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
  r.donor_column = plan.donor_column;
  r.negative_values = w.saw_negative ? NegativeValues::kSome : NegativeValues::kNone;
  // Scaled data is not binned (docs/FORMAT.md "Histograms"): no count for it.
  r.values_above_hist_max = w.histograms && !w.saw_negative ? w.above_max : -1;
  r.measured_genes.resize(plan.gene_map.size());
  std::iota(r.measured_genes.begin(), r.measured_genes.end(), 0);
  s.datasets.push_back(std::move(r));
  return s;
}

// Bytes of an accumulator of `genes` genes of the dataset's groups, histograms included.
uint64_t AccumulatorBytes(const DatasetWork& w, int64_t genes) {
  uint64_t bytes = Accumulator::BytesFor(w.grouping.n_groups(), genes);
  if (w.histograms) bytes += Accumulator::HistogramBytesFor(w.grouping.n_cells, genes);
  return bytes;
}

// Genes per pass so that the accumulator, its histograms included, fits `budget`.
int32_t GenesPerPass(const DatasetWork& w, int32_t n_genes, uint64_t budget) {
  if (w.histograms) {
    // Each group's row of bins is rounded up to a cache line: at most 64 bytes a group.
    const uint64_t rounding = uint64_t{64} * static_cast<uint64_t>(w.grouping.n_groups());
    budget = budget > rounding ? budget - rounding : 0;
  }
  const uint64_t per_gene = AccumulatorBytes(w, 8) / 8;
  const uint64_t fit = budget / std::max<uint64_t>(1, per_gene) / 8 * 8;  // whole cache lines
  return static_cast<int32_t>(std::clamp<uint64_t>(fit, 8, std::max<int32_t>(8, n_genes)));
}

// Genes per pass of tiled aggregation: as many as hold the pending values of average
// genes, and a quarter more, in `budget` (a pass that meets denser genes is redone).
int32_t TiledGenesPerPass(const DatasetWork& w, int32_t n_genes, uint64_t budget) {
  const auto stored = static_cast<uint64_t>(std::max<int64_t>(1, w.plan.matrix.stored));
  const uint64_t pending = (stored + stored / 4) * aggregate::TiledRows::kBytesPerValue;
  const uint64_t fit = budget / std::max<uint64_t>(1, pending / std::max(1, n_genes));
  return static_cast<int32_t>(std::clamp<uint64_t>(fit, 1, std::max(1, n_genes)));
}

// The note for a dataset read more than once (docs/BUILD.md "Bounded memory").
std::string PassesNote(const DatasetWork& w) {
  return "dataset " + Quote(w.plan.input.name) + ": aggregated in " + std::to_string(w.passes) +
         " passes over its matrix, a range of genes each, to stay within the memory limit; "
         "with a larger --memory-limit it takes one";
}

// The note for a dataset with values above the histograms' upper edge.
std::string AboveMaxNote(const DatasetWork& w, double hist_max) {
  return "dataset " + Quote(w.plan.input.name) + ": " + std::to_string(w.above_max) +
         " values above the histograms' upper edge " + FormatPythonFloat(hist_max) +
         " were counted in the top bin; build with --hist-max to widen it";
}

// Aggregates the matrix into full accumulators, in passes of as many genes as fit
// `budget`.
Status AccumulateInPasses(DatasetWork* w, int32_t n_genes, uint64_t budget, SpillFile* spill,
                          ProgressCounter* progress) {
  const int32_t per_pass = GenesPerPass(*w, n_genes, budget);
  w->ring->slabs.Release();  // the accumulator takes the memory they kept
  for (int32_t lo = 0; lo < n_genes; lo += per_pass) {
    ++w->passes;
    const int32_t hi = std::min(n_genes, lo + per_pass);
    Accumulator acc(w->grouping.n_groups(), lo, hi, w->histograms ? &*w->histograms : nullptr);
    CC_RETURN_IF_ERROR(Accumulate(w, &acc, /*count_progress=*/hi >= n_genes, progress));
    CC_RETURN_IF_ERROR(SpillAccumulator(*w, acc, spill));
    w->saw_negative |= acc.saw_negative();
    w->above_max += acc.above_max();
  }
  return Status::Ok();
}

// Whether the dataset's row blocks go through tiles (aggregate/tiled_rows.h): a sparse
// matrix by rows whose full accumulator would be far larger than the caches, unless its
// pending values would take more passes over the file than the accumulator (many cells
// in few groups: the values outnumber the slots). Smaller accumulators stay in the
// caches as they are, and the tiles' second step would only cost.
bool UseTiles(const DatasetWork& w, int32_t n_genes, uint64_t budget) {
  constexpr uint64_t kTilesAbove = uint64_t{16} << 20;
  if (!w.stream->by_rows() || w.plan.matrix.encoding != h5ad::Encoding::kCsr) return false;
  if (AccumulatorBytes(w, n_genes) <= kTilesAbove) return false;
  const auto passes = [n_genes](int32_t per_pass) { return (n_genes + per_pass - 1) / per_pass; };
  return passes(TiledGenesPerPass(w, n_genes, budget)) <= passes(GenesPerPass(w, n_genes, budget));
}

// Aggregates a matrix by rows tile by tile, in passes of as many genes as fit `budget`
// with their pending values (planned from the average gene): a pass whose values
// outgrow it is redone with half as many genes.
Status AccumulateTiled(DatasetWork* w, int32_t n_genes, uint64_t budget, SpillFile* spill,
                       ProgressCounter* progress) {
  using aggregate::TiledRows;
  const HistogramSpec* histograms = w->histograms ? &*w->histograms : nullptr;
  const int32_t tile_genes = TiledRows::TileGenesFor(w->grouping.n_groups(), histograms);
  const uint64_t max_values = budget / TiledRows::kBytesPerValue;
  const int32_t planned = TiledGenesPerPass(*w, n_genes, budget);
  int32_t per_pass = planned;
  const std::string& name = w->plan.input.name;
  bool counted = false;  // progress counts the cells once, in the last pass
  for (int32_t lo = 0; lo < n_genes;) {
    const int32_t hi = std::min(n_genes, lo + per_pass);
    const bool count = hi >= n_genes && !counted;
    counted |= count;
    ++w->passes;
    TiledRows tiles(lo, hi, tile_genes, w->threads, max_values,
                    histograms ? &histograms->layout : nullptr, &w->ring->slabs);
    // Each worker takes its blocks in increasing order: one lane each (tiled_rows.h).
    CC_RETURN_IF_ERROR(
        ShareBlocks(*w->stream, w->threads, *w->ring, [&](int worker, const SparseBlock& block) {
          if (auto bad = tiles.Partition(block, w->cells, worker)) return w->Bad(*bad);
          if (count) progress->Add(name, block.major_count);
          return Status::Ok();
        }));
    if (tiles.overflowed()) {
      if (per_pass == 1)
        return Status::OutOfMemory("dataset " + Quote(name) +
                                   ": one gene's values do not fit the memory limit; raise "
                                   "--memory-limit");
      per_pass /= 2;
      continue;
    }
    CC_RETURN_IF_ERROR(SpillTiles(*w, tiles, lo, hi, spill));
    w->saw_negative |= tiles.saw_negative();
    w->above_max += tiles.above_max();
    lo = hi;
    per_pass = planned;  // the genes after a dense range are planned afresh
  }
  return Status::Ok();
}

}  // namespace

Result<StoreData> AggregateDataset(const DatasetPlan& plan, const BuildOptions& options,
                                   const BuildCallbacks& callbacks, int threads, BlockRing* ring,
                                   SpillFile* spill, ProgressCounter* progress) {
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
  const auto n_genes = static_cast<int32_t>(plan.gene_map.size());
  if (options.histograms)
    w.histograms =
        aggregate::HistogramSpec{histogram::Layout(options.hist_max), &w.grouping.n_cells};
  CC_RETURN_IF_ERROR(UseTiles(w, n_genes, memory.accumulator)
                         ? AccumulateTiled(&w, n_genes, memory.accumulator, spill, progress)
                         : AccumulateInPasses(&w, n_genes, memory.accumulator, spill, progress));
  if (w.passes > 1 && callbacks.note) callbacks.note(PassesNote(w));
  if (w.saw_negative && callbacks.note) callbacks.note(NegativeValuesWarning(w));
  if (w.histograms && !w.saw_negative && w.above_max > 0 && callbacks.note)
    callbacks.note(AboveMaxNote(w, options.hist_max));
  StoreData part = DatasetPart(w);
  // Everything of this input has been read: it must not have changed meanwhile.
  CC_RETURN_IF_ERROR(CheckSourceUnchanged(plan));
  return part;
}

}  // namespace cellcube
