// Internal to src/query: the engine's state (QueryEngine::Impl) and the buffers of one
// call (QueryEngine::Scratch), taken from the engine's pool for the call's duration, so
// calls may nest or run on any number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cellcube/query.h"
#include "ontology/term_index.h"
#include "query/gene_names.h"
#include "query/scales.h"
#include "query/scan.h"
#include "util/scratch_pool.h"

namespace cellcube {
namespace query {

using LabelCodes = std::unordered_map<std::string, int32_t>;

// A where column and where its flags start in SelectScratch::allowed.
struct WhereFilter {
  int32_t column;
  size_t offset;
};

struct SelectScratch {
  std::vector<uint8_t> dataset_selected;  // per dataset
  std::vector<uint8_t> allowed;           // per where column: 1 + labels flags (0 = NA)
  std::vector<GroupRange> runs;
  std::vector<WhereFilter> filters;
};

struct RollUpScratch {
  std::vector<int32_t> split_of;  // per group in [base, base + size)
  std::vector<GroupRange> runs;
  ScanBuffers buffers;                         // this thread's accumulators
  std::vector<int64_t> cells;                  // per split
  std::vector<int32_t> contributing;           // datasets with a selected group
  std::vector<int32_t> contributing_index;     // per dataset: into contributing, or -1
  std::vector<int64_t> pairs_begin;            // per contributing dataset, into:
  std::vector<int32_t> pair_split;             // the splits with cells of that dataset
  std::vector<int64_t> pair_cells;             // and how many
  std::vector<int32_t> last_pair;              // per split, while the pairs are made
  std::vector<int32_t> all_splits;             // 0, 1, ..., n_splits - 1
  std::vector<size_t> by_dataset;              // selected groups by contributing dataset
  std::vector<int32_t> selected_contributing;  // per selected group: its dataset's index
  std::vector<int64_t> selected_cells;         // per selected group: its cells
  bool sparse = false;                         // PlanPairs' verdict
  bool short_runs = false;                     // query::ShortRuns(runs)

  // What the plan above was made for: PlanRuns and PlanPairs depend on nothing else (the
  // scratch belongs to one engine, so to one store), so the next roll-up of the same
  // selection (a page adding genes, a DE's two passes) reuses it.
  std::vector<int32_t> planned_groups, planned_splits;
  int32_t planned_n_splits = -1;

  bool PlannedFor(const std::vector<int32_t>& groups, const std::vector<int32_t>& splits,
                  int32_t n_splits) const {
    return planned_n_splits == n_splits && planned_groups == groups && planned_splits == splits;
  }
};

// The embedded ontology terms as the engine uses them (docs/ONTOLOGY.md): per column,
// its ontology (-1: not backed) and per label its term (-1: a plain value).
struct Terms {
  std::unique_ptr<const ontology::TermIndex> index;  // null without ontologies
  std::vector<int32_t> column_ontology;
  std::vector<std::vector<int32_t>> value_term;

  explicit operator bool() const { return index != nullptr; }
  bool Backed(int32_t column) const {
    return index && column_ontology[static_cast<size_t>(column)] >= 0;
  }
  int32_t TermOf(int32_t column, int32_t code) const {
    return code < 0 || !Backed(column)
               ? -1
               : value_term[static_cast<size_t>(column)][static_cast<size_t>(code)];
  }
  // The term id of a column's label `code`: "" for a plain value, NA or an unbacked column.
  const std::string& IdOf(const StoreData& meta, int32_t column, int32_t code) const {
    static const std::string kNone;
    const int32_t term = TermOf(column, code);
    return term < 0 ? kNone : meta.ontology.term_ids[static_cast<size_t>(term)];
  }
  // A value of a backed column as a term: its id or label, any case; -1.
  int32_t Find(int32_t column, const std::string& value) const {
    return Backed(column) ? index->Find(column_ontology[static_cast<size_t>(column)], value) : -1;
  }
  // Per (label + 1): the labels whose term is `term` (or, with `subtree`, in its subtree).
  void Flag(int32_t column, int32_t term, bool subtree, uint8_t* flags) const;
  static Terms Of(const StoreData& meta);
  // A roll-up of a backed `column` over `groups` (docs/ONTOLOGY.md "Roll-up"): the shown
  // terms in pre-order with their depths, and the plain values present (label codes,
  // ascending).
  struct Rolled {
    ontology::TermIndex::Shown shown;
    std::vector<int32_t> plain;
  };
  Rolled Roll(const StoreData& meta, int32_t column, const std::vector<int32_t>& groups) const;
};

// A rolled-up answer's output splits (query/rolled_splits.h), each the sum of some base
// splits (the plain splits of the selected groups), with their labels, term ids, depths.
struct RolledSplits {
  int64_t n_out = 0;
  std::vector<int64_t> begin;  // per output split: its base splits base[begin[o], begin[o + 1])
  std::vector<int32_t> base;
  std::vector<std::string> labels, term_ids;  // n_out x by, row-major
  std::vector<int32_t> depth;                 // n_out x (rolled by-columns)
  std::vector<int32_t> groups, splits;        // (selected group, output split), if asked
};

struct RunScratch {
  std::vector<int32_t> selected;  // groups
  std::vector<uint64_t> keys;     // per selected group
  std::vector<int32_t> split;     // per selected group
  std::vector<uint64_t> distinct;
  std::vector<int32_t> dense;           // key -> split + 1 (0 = unseen)
  std::vector<Aggregate> agg;           // per split x gene
  std::vector<Bins> bins;               // per split x gene, when histograms are asked for
  std::vector<int32_t> representative;  // per split: one of its groups
  // A roll-up's plan, and what it was made for: the next query of the same selection
  // and splits (a page adding genes) reuses it. Its pooled statistics per split x gene.
  RolledSplits rolled;
  std::vector<int32_t> rolled_selected, rolled_by;
  std::vector<uint8_t> rolled_flags;
  bool rolled_valid = false;
  std::vector<Aggregate> rolled_agg;
  std::vector<Bins> rolled_bins;
};

}  // namespace query

struct QueryEngine::Scratch {
  query::SelectScratch select;
  query::RollUpScratch rollup;
  query::RunScratch run;
};

struct QueryEngine::Impl {
  query::Terms terms;
  std::unique_ptr<const GeneNames> genes;                // ids and symbols
  std::vector<query::LabelCodes> label_code;             // per column
  std::vector<std::vector<std::string>> present_values;  // per column
  std::vector<double> inverse_cells;                     // per group: 1 / n_cells
  int64_t parallel_min_entries = 0;
  std::unique_ptr<const query::DatasetScales> scales;  // what answers note about scales
  mutable ScratchPool<QueryEngine::Scratch> scratch;   // one set per call running
};

}  // namespace cellcube
