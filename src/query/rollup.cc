// The roll-up (docs/QUERY.md, "The engine"): plan the runs of selected groups and which
// splits each dataset's cells fall in (kept for the next roll-up of the same selection),
// check the entries the scan will read, and scan every gene (query/scan.h).
#include <algorithm>
#include <numeric>
#include <vector>

#include "cellcube/query.h"
#include "query/engine_internal.h"

namespace cellcube {

// Per (split, gene), split-major: the statistics of the groups assigned to each split
// (`groups` ascending, `split_of_group` per group), n_cells counting only the datasets
// that measured the gene; m2 only when `want_m2`. The entries to be read are checked
// first (docs/FORMAT.md, "Validation rules"). The one roll-up behind queries and DE.
namespace {

using query::GeneScan;
using query::RollUpScratch;

// The runs of groups to scan, one per dataset (within a dataset, unselected groups in
// between are skipped), each selected group's split (t.split_of, from t.runs' first
// group), the cells per split, and the datasets with a selected group.
Status PlanRuns(const StoreReader& s, const std::vector<int32_t>& groups,
                const std::vector<int32_t>& split_of_group, int32_t n_splits, RollUpScratch& t) {
  const std::vector<int32_t>& group_dataset = s.group_dataset();
  const size_t n_selected = groups.size();
  t.runs.clear();
  for (size_t i = 0; i < n_selected; ++i) {
    const int32_t g = groups[i];
    if (i > 0 && g <= groups[i - 1]) return Status::Internal("roll-up groups are not ascending");
    const int32_t dataset = group_dataset[static_cast<size_t>(g)];
    if (t.runs.empty() || dataset != t.runs.back().dataset)
      t.runs.push_back({g, g + 1, dataset});
    else
      t.runs.back().end = g + 1;
  }
  const int64_t base = t.runs.front().begin;
  t.split_of.assign(static_cast<size_t>(t.runs.back().end - base), -1);  // -1: unselected
  t.cells.assign(n_splits, 0);
  t.contributing.clear();
  t.contributing_index.assign(static_cast<size_t>(s.n_datasets()), -1);
  t.selected_contributing.resize(n_selected);
  t.selected_cells.resize(n_selected);
  for (size_t i = 0; i < n_selected; ++i) {
    const int32_t g = groups[i];
    const int32_t split = split_of_group[i];
    if (split < 0 || split >= n_splits) return Status::Internal("roll-up split out of range");
    t.split_of[static_cast<size_t>(g - base)] = split;
    const int64_t cells = s.meta().n_cells[static_cast<size_t>(g)];
    t.cells[static_cast<size_t>(split)] += cells;
    t.selected_cells[i] = cells;
    const auto d = static_cast<size_t>(group_dataset[static_cast<size_t>(g)]);
    if (t.contributing_index[d] < 0) {
      t.contributing_index[d] = static_cast<int32_t>(t.contributing.size());
      t.contributing.push_back(static_cast<int32_t>(d));
    }
    t.selected_contributing[i] = t.contributing_index[d];
  }
  return Status::Ok();
}

// Per contributing dataset, the splits holding its cells and how many (t.pairs_*): a
// gene's splits count the cells of the datasets that measured it. Returns whether the
// roll-up is sparse: many splits, few of them holding cells of several datasets.
bool PlanPairs(const std::vector<int32_t>& split_of_group, int32_t n_splits, RollUpScratch& t) {
  const size_t n_selected = split_of_group.size();
  const std::vector<int32_t>& contributing = t.selected_contributing;
  t.pairs_begin.assign(1, 0);
  t.pair_split.clear();
  t.pair_cells.clear();
  t.last_pair.assign(static_cast<size_t>(n_splits), -1);
  // The selected groups by contributing dataset: in order in a store cellcube wrote (each
  // dataset's groups together), else sorted so.
  const bool together = std::is_sorted(contributing.begin(), contributing.end());
  if (!together) {
    t.by_dataset.resize(n_selected);
    std::iota(t.by_dataset.begin(), t.by_dataset.end(), 0);
    std::stable_sort(t.by_dataset.begin(), t.by_dataset.end(),
                     [&](size_t a, size_t b) { return contributing[a] < contributing[b]; });
  }
  for (size_t n = 0; n < n_selected; ++n) {
    const size_t i = together ? n : t.by_dataset[n];
    const auto sp = static_cast<size_t>(split_of_group[i]);
    if (n > 0 && contributing[i] != contributing[together ? n - 1 : t.by_dataset[n - 1]])
      t.pairs_begin.push_back(static_cast<int64_t>(t.pair_split.size()));
    if (t.last_pair[sp] < t.pairs_begin.back()) {
      t.last_pair[sp] = static_cast<int32_t>(t.pair_split.size());
      t.pair_split.push_back(static_cast<int32_t>(sp));
      t.pair_cells.push_back(0);
    }
    t.pair_cells[static_cast<size_t>(t.last_pair[sp])] += t.selected_cells[i];
  }
  t.pairs_begin.push_back(static_cast<int64_t>(t.pair_split.size()));
  if (t.all_splits.size() != static_cast<size_t>(n_splits)) {
    t.all_splits.resize(static_cast<size_t>(n_splits));
    std::iota(t.all_splits.begin(), t.all_splits.end(), 0);
  }
  return n_splits >= 64 && t.pair_split.size() <= 2 * static_cast<size_t>(n_splits);
}

}  // namespace

// Plans the runs and the per-dataset splits, checks the entries they will read, then scans
// every gene (on every core when that pays) into the matrix or the visitor.
Status QueryEngine::RollUpInto(Scratch& scratch, const std::vector<int32_t>& genes,
                               const std::vector<int32_t>& groups,
                               const std::vector<int32_t>& split_of_group, int32_t n_splits,
                               RollUpWants wants, std::vector<Aggregate>* out,
                               std::vector<Bins>* bins_out, const RollUpVisitor* visit) const {
  RollUpScratch& t = scratch.rollup;
  const StoreReader& s = *store_;
  if (out) out->clear();
  if (bins_out) bins_out->clear();
  if (wants.bins && !s.meta().has_histograms()) return NoHistograms();
  if (groups.size() != split_of_group.size()) return Status::Internal("roll-up sizes differ");
  if (groups.empty() || n_splits <= 0) {
    const std::vector<Aggregate> none(static_cast<size_t>(std::max(0, n_splits)));
    const std::vector<Bins> no_bins(wants.bins ? none.size() : 0);
    if (out) out->assign(none.size() * genes.size(), Aggregate{});
    if (bins_out && wants.bins) bins_out->assign(none.size() * genes.size(), Bins{});
    if (visit)
      for (size_t gi = 0; gi < genes.size(); ++gi)
        (*visit)(gi, GeneSplits{none.data(), wants.bins ? no_bins.data() : nullptr, nullptr, 0});
    return Status::Ok();
  }
  if (!t.PlannedFor(groups, split_of_group, n_splits)) {
    t.planned_n_splits = -1;  // no plan until this one is whole
    CC_RETURN_IF_ERROR(PlanRuns(s, groups, split_of_group, n_splits, t));
    t.sparse = PlanPairs(split_of_group, n_splits, t);
    t.short_runs = query::ShortRuns(t.runs);
    t.planned_groups = groups;
    t.planned_splits = split_of_group;
    t.planned_n_splits = n_splits;
  }
  const bool sparse = t.sparse;
  CC_ASSIGN_OR_RETURN(const EntryRead read,
                      EntriesOf(s).PrepareRead(genes, t.contributing, wants.bins));

  GeneScan scan;
  scan.store = &s;
  scan.read = &read;
  scan.runs = &t.runs;
  scan.base = t.runs.front().begin;
  scan.split_of = t.split_of.data();
  scan.n_splits = static_cast<size_t>(n_splits);
  scan.n_genes = genes.size();
  scan.n_contributing = t.contributing.size();
  scan.cells = t.cells.data();
  scan.contributing = t.contributing.data();
  scan.pairs_begin = t.pairs_begin.data();
  scan.pair_split = t.pair_split.data();
  scan.pair_cells = t.pair_cells.data();
  scan.all_splits = t.all_splits.data();
  scan.sparse = sparse;
  scan.inverse_cells = impl_->inverse_cells.data();
  scan.sums = query::PickSums(read, sparse, t.short_runs);
  scan.second = wants.m2 ? query::PickSecond(read, t.short_runs) : nullptr;
  scan.hist = wants.bins ? query::PickHist(read) : nullptr;
  scan.visit = visit;
  if (out) out->assign(static_cast<size_t>(n_splits) * genes.size(), Aggregate{});
  if (bins_out && wants.bins) {
    bins_out->assign(static_cast<size_t>(n_splits) * genes.size(), Bins{});
    scan.bins_out = bins_out->data();
  }
  if (!genes.empty())
    // Decoding an entry's histogram costs a few times what adding its sums does: such
    // roll-ups go to the pool at fewer entries.
    query::ScanAllGenes(scan, genes, impl_->parallel_min_entries / (wants.bins ? 4 : 1), &t.buffers,
                        out ? out->data() : nullptr);
  return Status::Ok();
}

Result<std::vector<Aggregate>> QueryEngine::RollUp(const std::vector<int32_t>& genes,
                                                   const std::vector<int32_t>& groups,
                                                   const std::vector<int32_t>& split_of_group,
                                                   int32_t n_splits, bool want_m2) const {
  std::vector<Aggregate> out;
  auto scratch = impl_->scratch.Take();
  CC_RETURN_IF_ERROR(RollUpInto(*scratch, genes, groups, split_of_group, n_splits,
                                RollUpWants{want_m2, false}, &out, nullptr, nullptr));
  return out;
}

Status QueryEngine::RollUpEach(const std::vector<int32_t>& genes,
                               const std::vector<int32_t>& groups,
                               const std::vector<int32_t>& split_of_group, int32_t n_splits,
                               RollUpWants wants, const RollUpVisitor& visit) const {
  auto scratch = impl_->scratch.Take();
  return RollUpInto(*scratch, genes, groups, split_of_group, n_splits, wants, nullptr, nullptr,
                    &visit);
}

Status QueryEngine::NoHistograms() const {
  const StoreReader& s = *store_;
  const std::string why =
      s.format_version() < 3
          ? "it is of format " + std::to_string(s.format_version()) + ", older than histograms"
          : "it was built with --no-histograms";
  return Status::InvalidArgument(
      "store '" + s.path() + "' has no histograms (" + why +
      "): medians, quantiles, max, distributions and the Wilcoxon test need them; rebuild it "
      "with 'cellcube build' (histograms are on by default)");
}

}  // namespace cellcube
