#include "store/dataset_plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "aggregate/groupby_choice.h"
#include "util/text.h"

namespace cellcube {
namespace {

using aggregate::Transform;
using h5ad::Column;
using h5ad::ColumnKind;
using h5ad::File;

constexpr int64_t kTransformSample = 10000;

}  // namespace

const std::vector<std::string>& DefaultCellTypeColumns() {
  static const std::vector<std::string> kColumns = {
      "cell_type", "celltype", "cell_ontology_class", "CellType", "cell_type_ontology_term_id",
      "leiden",    "louvain"};
  return kColumns;
}

const std::vector<std::string>& DefaultGeneSymbolColumns() {
  static const std::vector<std::string> kColumns = {"feature_name", "gene_symbols", "gene_symbol",
                                                    "gene_name", "symbol"};
  return kColumns;
}

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

namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The first of `candidates` (an option's comma list, docs/BUILD.md) that `columns` has;
// NotFound naming the option, with suggestions, when none is there.
Result<std::string> FirstGiven(const std::vector<std::string>& candidates,
                               const std::vector<std::string>& columns, const std::string& where,
                               const std::string& option) {
  for (const auto& c : candidates)
    if (Contains(columns, c)) return c;
  if (candidates.size() == 1)
    return Status::NotFound("no " + where + " column " + Quote(candidates[0]) + " for " + option +
                            SuggestionSuffix(candidates[0], columns));
  return Status::NotFound("none of the " + option + " columns (" + QuoteList(candidates) +
                          ") is in " + where + " (it has " + QuoteList(columns) + ")");
}

// The names quoted (the first `max`, then how many more), wrapped (util/text.h WrapList)
// after `first`. Each line starts with "\n  ": the CLI prints such a message as one error
// over several lines (src/cli/main.cc), as it does a build's inputs that cannot be built.
std::string WrappedNames(const std::vector<std::string>& names, const std::string& first,
                         size_t max = 100) {
  std::vector<std::string> quoted;
  for (size_t i = 0; i < names.size() && i < max; ++i) quoted.push_back(Quote(names[i]));
  if (names.size() > max)
    quoted.push_back("and " + std::to_string(names.size() - max) +
                     " more ('cellcube inspect FILE' lists them all)");
  std::string lines = WrapList(quoted, first, "      ", 98);  // 98 + the CLI's 2 = 100
  lines.pop_back();  // the message goes on (or ends) without a newline
  return "\n" + lines;
}

// The error of a file without any default cell-type column: every default and every obs
// column, one wrapped list each (it used to be a line of 400 characters, which cut the
// obs columns at 8).
Status NoCellTypeColumn(const std::vector<std::string>& obs_columns) {
  return Status::NotFound(
      "no cell-type column; choose one of the obs columns with --cell-type COL" +
      WrappedNames(DefaultCellTypeColumns(), "  obs has none of the defaults:") +
      WrappedNames(obs_columns, "  obs has " + std::to_string(obs_columns.size()) +
                                    (obs_columns.size() == 1 ? " column:" : " columns:")));
}

Result<std::string> ChooseCellType(const std::vector<std::string>& obs_columns,
                                   const BuildOptions& options) {
  if (!options.cell_type.empty())
    return FirstGiven(options.cell_type, obs_columns, "obs", "--cell-type");
  for (const auto& c : DefaultCellTypeColumns())
    if (Contains(obs_columns, c)) return c;
  return NoCellTypeColumn(obs_columns);
}

bool Groupable(const Column& col) {
  return col.kind == ColumnKind::kCategorical || col.kind == ColumnKind::kBoolean ||
         col.kind == ColumnKind::kNullableBoolean;
}

// Whether `name` is the id column of a CELLxGENE pair whose label column is in obs
// (docs/ONTOLOGY.md): grouping by both would split nothing further.
bool IsPairIdOf(const std::string& name, const std::vector<std::string>& obs_columns) {
  static const std::string kSuffix = "_ontology_term_id";
  if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) return false;
  return Contains(obs_columns, name.substr(0, name.size() - kSuffix.size()));
}

// The values a grouping column holds, and for a CELLxGENE pair each one's term id: the
// id column must give one id per value (docs/ONTOLOGY.md).
Result<DatasetPlan::ColumnValues> ValuesOf(const File& file, const Column& col,
                                           const std::string& store_name,
                                           const std::vector<std::string>& obs_columns) {
  DatasetPlan::ColumnValues out;
  out.name = store_name;
  std::vector<int32_t> index(col.labels.size(), -1);
  for (int32_t code : col.codes)
    if (code >= 0 && index[static_cast<size_t>(code)] < 0) {
      index[static_cast<size_t>(code)] = static_cast<int32_t>(out.values.size());
      out.values.push_back(col.labels[static_cast<size_t>(code)]);
    }
  const std::string id_column = PairIdColumn(col.name);
  if (!Contains(obs_columns, id_column)) return out;
  CC_ASSIGN_OR_RETURN(Column ids, file.ReadObsColumn(id_column));
  if (ids.codes.size() != col.codes.size())
    return Status::InvalidArgument("obs column " + Quote(id_column) + " has " +
                                   std::to_string(ids.codes.size()) + " values, " +
                                   Quote(col.name) + " " + std::to_string(col.codes.size()));
  out.pair_ids.assign(out.values.size(), "");
  std::vector<int32_t> id_of(out.values.size(), -2);  // -2: not seen yet
  for (size_t i = 0; i < col.codes.size(); ++i) {
    if (col.codes[i] < 0) continue;
    const int32_t v = index[static_cast<size_t>(col.codes[i])];
    const int32_t id = ids.codes[i];
    if (id_of[static_cast<size_t>(v)] == -2) {
      id_of[static_cast<size_t>(v)] = id;
      if (id >= 0) out.pair_ids[static_cast<size_t>(v)] = ids.labels[static_cast<size_t>(id)];
    } else if (id_of[static_cast<size_t>(v)] != id) {
      const auto name = [&](int32_t c) {
        return c < 0 ? std::string("NA") : Quote(ids.labels[static_cast<size_t>(c)]);
      };
      return Status::InvalidArgument("value " + Quote(out.values[static_cast<size_t>(v)]) +
                                     " of obs column " + Quote(col.name) +
                                     " comes with two ids in " + Quote(id_column) + ": " +
                                     name(id_of[static_cast<size_t>(v)]) + " and " + name(id) +
                                     "; a CELLxGENE pair gives each label one id");
    }
  }
  return out;
}

// The group-by columns of one dataset (docs/BUILD.md, docs/SCALING.md; aggregate/groupby_choice.h):
// an explicit --groupby as given, with a warning note when its groups average fewer than 5 cells;
// else the default, with a note naming the columns it left out or dropped.
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
      if (!Contains(obs_columns, name)) {  // NA here; the build notes it once for all inputs
        plan->missing_groupby.push_back(name);
        continue;
      }
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
    if (IsPairIdOf(name, obs_columns)) continue;  // the same grouping as its label column
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
    callbacks.note(aggregate::DescribeGroupbyChoice(choice, candidates, n_cells, dataset));
  for (size_t i : choice.chosen) {
    plan->groupby.push_back(candidates[i].name);
    plan->columns.push_back(std::move(kept[kept_of[i]]));
  }
  return Status::Ok();
}

// build --donor (docs/DE.md): the first candidate the dataset has joins its grouping as the
// store column "donor" (replacing any group-by column of either name); none: a note.
Status ChooseDonor(DatasetPlan* plan, const std::vector<std::string>& obs_columns,
                   const BuildOptions& options, const BuildCallbacks& callbacks) {
  if (options.donor.empty()) return Status::Ok();
  std::string chosen;
  for (const auto& name : options.donor)
    if (Contains(obs_columns, name)) {
      chosen = name;
      break;
    }
  const std::string dataset = "dataset " + Quote(plan->input.name) + ": ";
  if (chosen.empty()) {
    if (callbacks.note)
      callbacks.note(dataset + "none of the --donor columns (" + QuoteList(options.donor) +
                     ") is in obs; its cells have no donor");
    return Status::Ok();
  }
  if (chosen == plan->cell_type_column)
    return Status::InvalidArgument(dataset + "--donor column " + Quote(chosen) +
                                   " is the cell-type column");
  for (size_t i = 0; i < plan->groupby.size();) {
    if (plan->groupby[i] == chosen || plan->groupby[i] == "donor") {
      plan->groupby.erase(plan->groupby.begin() + static_cast<std::ptrdiff_t>(i));
      plan->columns.erase(plan->columns.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    } else {
      ++i;
    }
  }
  CC_ASSIGN_OR_RETURN(Column col, plan->file->ReadObsColumn(chosen));
  if (!Groupable(col))
    return Status::InvalidArgument(dataset + "--donor column " + Quote(chosen) +
                                   " holds numbers, not donor labels");
  plan->groupby.push_back(chosen);
  plan->columns.push_back(std::move(col));
  plan->donor_column = chosen;
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

}  // namespace

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

namespace {

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

}  // namespace

std::string PairIdColumn(const std::string& column) { return column + "_ontology_term_id"; }

Result<DatasetPlan> PlanDataset(const DatasetInput& input, const BuildOptions& options,
                                const BuildCallbacks& callbacks, MetaBuilder* meta,
                                bool keep_values) {
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
  CC_ASSIGN_OR_RETURN(plan.cell_type_column, ChooseCellType(obs.column_names, options));
  plan.obs_columns = obs.column_names;
  if (callbacks.note)
    callbacks.note("dataset " + Quote(input.name) + ": cell types from obs " +
                   Quote(plan.cell_type_column) +
                   (options.cell_type.empty()
                        ? " (the first default candidate it has; --cell-type COL picks another)"
                        : ""));
  CC_ASSIGN_OR_RETURN(Column cell_type, file.ReadObsColumn(plan.cell_type_column));
  plan.columns.push_back(std::move(cell_type));
  CC_RETURN_IF_ERROR(ChooseGroupby(&plan, obs.column_names, options, callbacks));
  CC_RETURN_IF_ERROR(ChooseDonor(&plan, obs.column_names, options, callbacks));

  CC_ASSIGN_OR_RETURN(auto var, file.VarInfo(plan.matrix.path));
  if (!options.gene_symbols.empty()) {
    CC_ASSIGN_OR_RETURN(plan.symbols_column, FirstGiven(options.gene_symbols, var.column_names,
                                                        "var", "--gene-symbols"));
  } else {
    for (const auto& c : DefaultGeneSymbolColumns())
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
                          ? " are not all whole and >= 0: not counts)"
                          : " are whole and >= 0: counts)"));
  } else {
    CC_ASSIGN_OR_RETURN(plan.transform, aggregate::ParseTransform(options.transform));
  }
  CC_RETURN_IF_ERROR(PlanGenes(&plan, callbacks, meta));
  if (keep_values)
    for (size_t c = 0; c < plan.columns.size(); ++c) {
      const Column& col = plan.columns[c];
      const std::string store_name = c == 0                          ? std::string("cell_type")
                                     : col.name == plan.donor_column ? std::string("donor")
                                                                     : col.name;
      CC_ASSIGN_OR_RETURN(auto values, ValuesOf(file, col, store_name, obs.column_names));
      plan.column_values.push_back(std::move(values));
    }
  plan.columns.clear();  // read again when aggregating: planning many inputs stays small
  plan.file.reset();     // and holds no file open
  return plan;
}

}  // namespace cellcube
