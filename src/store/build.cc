// The store operations: build and add (plan every input, aggregate one dataset at a
// time into a spill file, stream the entries into the store), remove and merge
// (existing stores streamed through windows). docs/SCALING.md: bounded memory, deterministic.
#include <sys/resource.h>

#include <algorithm>
#include <thread>
#include <unordered_set>

#include "cellcube/store.h"
#include "histogram/histogram.h"
#include "store/block_pipeline.h"
#include "store/dataset_aggregation.h"
#include "store/dataset_plan.h"
#include "store/meta_builder.h"
#include "store/spill.h"
#include "store/store_source.h"
#include "store/store_stream.h"
#include "store/temp_output.h"
#include "store/term_matching.h"
#include "util/isolate.h"
#include "util/parallel.h"
#include "util/text.h"

namespace cellcube {
namespace {

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
  return options.threads > 0 ? options.threads : Cores();
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

// Dataset names must be new to the store and unique among the inputs.
Status CheckNames(const StoreData& existing, const std::vector<DatasetInput>& inputs,
                  const std::string& target) {
  std::unordered_set<std::string> stored, names;
  for (const auto& d : existing.datasets) stored.insert(d.name);
  for (const auto& in : inputs) {
    if (stored.count(in.name))
      return Status::InvalidArgument("dataset " + Quote(in.name) + " is already in " +
                                     Quote(target) +
                                     "; remove it first ('cellcube remove') or add it under "
                                     "another name with NAME=FILE.h5ad");
    if (!names.insert(in.name).second)
      return Status::InvalidArgument("two inputs are named " + Quote(in.name) +
                                     "; name them apart with NAME=PATH");
  }
  return Status::Ok();
}

// Every input's problem at once (docs/BUILD.md "Inputs that differ"): one alone as it
// is; several as one error, a line each (the first 20, then a count), an input's own
// further lines indented under its first.
Status PlanningErrors(const std::vector<Status>& errors, size_t n_inputs) {
  if (errors.size() == 1) return errors[0];
  std::string message = std::to_string(errors.size()) + " of " + std::to_string(n_inputs) +
                        " inputs cannot be built:";
  for (size_t i = 0; i < errors.size() && i < 20; ++i) {
    // An error of several lines (its own after "\n  ") stays under its input's first line.
    std::string lines = errors[i].message();
    for (size_t at = 0; (at = lines.find('\n', at)) != std::string::npos; at += 3)
      lines.insert(at + 1, "  ");
    message += "\n  " + lines;
  }
  if (errors.size() > 20) message += "\n  and " + std::to_string(errors.size() - 20) + " more";
  return Status::FromCode(errors[0].code(), message);
}

// A --groupby column some inputs lack is NA there, said once; one that no input has is
// an error with suggestions (a typo, not a difference between files).
Status NoteMissingGroupby(const std::vector<DatasetPlan>& plans, const BuildOptions& options,
                          const BuildCallbacks& callbacks) {
  for (const auto& name : options.groupby) {
    std::vector<std::string> lacking;
    for (const auto& plan : plans)
      if (std::find(plan.missing_groupby.begin(), plan.missing_groupby.end(), name) !=
          plan.missing_groupby.end())
        lacking.push_back(plan.input.name);
    if (lacking.empty()) continue;
    if (lacking.size() == plans.size())
      return Status::NotFound("no input has an obs column " + Quote(name) + " for --groupby" +
                              SuggestionSuffix(name, plans[0].obs_columns));
    if (!callbacks.note) continue;
    callbacks.note("--groupby column " + Quote(name) + " is missing from " +
                   std::to_string(lacking.size()) + " of " + std::to_string(plans.size()) +
                   " datasets (" + QuoteList(lacking, 10) + "): their cells are NA in it");
  }
  return Status::Ok();
}

// Plans every input before any is aggregated, so a bad file fails before hours of work
// on the others, and every bad file in one run; their genes join `meta`'s union in input
// order.
Result<std::vector<DatasetPlan>> PlanAll(const std::vector<DatasetInput>& inputs,
                                         const BuildOptions& options,
                                         const BuildCallbacks& callbacks, MetaBuilder* meta,
                                         bool keep_values) {
  std::vector<DatasetPlan> plans;
  std::vector<Status> errors;
  for (const auto& in : inputs) {
    NoteActivity("checking dataset " + Quote(in.name) + " (" + Quote(in.path) + ")");
    auto plan = PlanDataset(in, options, callbacks, meta, keep_values);
    if (!plan.ok()) {
      errors.push_back(NamingInput(plan.status(), in.path));
      continue;
    }
    plans.push_back(std::move(plan).value());
  }
  if (!errors.empty()) return PlanningErrors(errors, inputs.size());
  CC_RETURN_IF_ERROR(NoteMissingGroupby(plans, options, callbacks));
  return plans;
}

// Where each dataset's entries lie in the spill file and its groups among the store's,
// and the bytes of the histogram records each brings to the store.
struct SpilledDatasets {
  std::vector<uint64_t> bounds;  // dataset d: [bounds[d], bounds[d + 1])
  std::vector<int64_t> group_offsets;
  std::vector<bool> not_binned;  // negative values: its records are dropped
  uint64_t hist_bytes = 0;       // of the datasets that keep theirs
};

// Aggregates the datasets one after another into `spill`, adding their groups to `meta`.
Result<SpilledDatasets> AggregateAll(const std::vector<DatasetPlan>& plans,
                                     const BuildOptions& options, const BuildCallbacks& callbacks,
                                     MetaBuilder* meta, SpillFile* spill) {
  int64_t total_cells = 0;
  for (const auto& plan : plans) total_cells += plan.n_obs;
  const int threads = ThreadsFor(options);
  ProgressCounter progress(callbacks, 0, total_cells);
  BlockRing ring(PlanMemory(options.memory_limit, threads).slots);
  SpilledDatasets out;
  out.bounds.push_back(spill->offset());
  for (const auto& plan : plans) {
    out.group_offsets.push_back(meta->n_groups());
    const uint64_t hist_before = spill->hist_bytes();
    auto part = AggregateDataset(plan, options, callbacks, threads, &ring, spill, &progress);
    if (!part.ok()) {
      // A read error in a file that changed underneath is reported as the change.
      if (Status changed = CheckSourceUnchanged(plan); !changed.ok()) return changed;
      return NamingInput(part.status(), plan.input.path);
    }
    CC_RETURN_IF_ERROR(meta->AddGroups(*part, plan.gene_map));
    out.bounds.push_back(spill->offset());
    // The flag is known once every pass is done: such a dataset is not binned.
    out.not_binned.push_back(part->datasets[0].negative_values == NegativeValues::kSome);
    if (!out.not_binned.back()) out.hist_bytes += spill->hist_bytes() - hist_before;
  }
  CC_RETURN_IF_ERROR(spill->Flush());
  return out;
}

static_assert(kDefaultHistMax == histogram::kDefaultMax);

// A store's histogram layout, as errors and notes name it.
std::string LayoutName(double hist_max) {
  return hist_max > 0 ? "histograms over (0, " + FormatPythonFloat(hist_max) + "]"
                      : "no histograms";
}

// The histograms of a build (options) or of an add (the store's layout, which the
// options must not contradict): the options the datasets are aggregated with.
Result<BuildOptions> HistogramOptions(const StoreFileSource* existing, const StoreData& meta,
                                      const BuildOptions& options, const BuildCallbacks& callbacks,
                                      const std::string& target) {
  BuildOptions out = options;
  if (!existing) {
    if (options.histograms && !histogram::Layout::Valid(options.hist_max))
      return Status::InvalidArgument("--hist-max must be a finite number above 0, not " +
                                     FormatPythonFloat(options.hist_max));
    return out;
  }
  const double store = meta.hist_max;
  if ((options.hist_max_given && (store == 0 || options.hist_max != store)) ||
      (!options.histograms && store > 0))
    return Status::InvalidArgument(
        Quote(target) + " has " + LayoutName(store) + "; add uses the store's layout, so " +
        (options.histograms ? "--hist-max " + FormatPythonFloat(options.hist_max)
                            : std::string("--no-histograms")) +
        " cannot apply (leave it out, or build a new store with it)");
  out.histograms = store > 0;
  out.hist_max = store > 0 ? store : options.hist_max;
  if (store == 0 && callbacks.note)
    callbacks.note(Quote(target) +
                   " has no histograms (built with --no-histograms, or by an older cellcube); the "
                   "datasets added get none either: rebuild it with 'cellcube build' for "
                   "distributions");
  return out;
}

// Build and add: an optional existing store first, then the inputs, aggregated.
Result<StoreSummary> BuildInto(StoreFileSource* existing, StoreData existing_meta,
                               const std::vector<DatasetInput>& inputs,
                               const BuildOptions& given_options, const BuildCallbacks& callbacks,
                               TempOutput& out) {
  if (inputs.empty()) return Status::Usage("no input .h5ad files given");
  CC_RETURN_IF_ERROR(CheckNames(existing_meta, inputs, out.target()));
  CC_ASSIGN_OR_RETURN(
      const BuildOptions options,
      HistogramOptions(existing, existing_meta, given_options, callbacks, out.target()));
  MetaBuilder meta;
  std::vector<int32_t> existing_map;
  const StoreOntologies existing_terms = existing_meta.ontology;
  if (existing) {
    existing_map = meta.AddGenes(existing_meta.gene_ids, existing_meta.gene_symbols);
    CC_RETURN_IF_ERROR(meta.AddGroups(existing_meta, existing_map));
    existing_meta = StoreData();  // its strings are in `meta` now
  }
  const bool match_terms = !options.ontologies.empty() || !existing_terms.empty();
  std::vector<ontology::TermMap> term_maps;
  if (match_terms) {
    CC_ASSIGN_OR_RETURN(term_maps, LoadTermMaps(options.ontologies, existing_terms));
  }
  CC_ASSIGN_OR_RETURN(std::vector<DatasetPlan> plans,
                      PlanAll(inputs, options, callbacks, &meta, match_terms));
  if (match_terms) {
    CC_ASSIGN_OR_RETURN(StoreOntologies terms,
                        MatchTerms(term_maps, existing_terms, callbacks, &plans));
    CC_RETURN_IF_ERROR(meta.AddOntology(terms));
  }
  CC_ASSIGN_OR_RETURN(auto spill, SpillFile::Create(out.dir()));
  CC_ASSIGN_OR_RETURN(SpilledDatasets spilled,
                      AggregateAll(plans, options, callbacks, &meta, spill.get()));
  // The parts in store order: the existing store's entries, then each dataset's.
  std::vector<std::unique_ptr<SpillSegment>> segments;
  std::vector<StreamedPart> parts;
  const size_t window = WindowBytes(options.memory_limit, plans.size() + (existing ? 1 : 0), 5);
  if (existing) {
    CC_RETURN_IF_ERROR(existing->Start(&existing_map, nullptr, window, true));
    parts.push_back({existing, 0});
  }
  for (size_t d = 0; d < plans.size(); ++d) {
    CC_ASSIGN_OR_RETURN(auto segment,
                        SpillSegment::Open(spill->fd(), spilled.bounds[d], spilled.bounds[d + 1],
                                           &plans[d].gene_map, window, spilled.not_binned[d]));
    parts.push_back({segment.get(), spilled.group_offsets[d]});
    segments.push_back(std::move(segment));
  }
  const int64_t n_entries =
      (existing ? existing->n_entries() : 0) + static_cast<int64_t>(spill->records());
  const uint64_t hist_bytes = (existing ? existing->hist_bytes() : 0) + spilled.hist_bytes;
  if (callbacks.note)
    for (const auto& note : meta.notes()) callbacks.note(note);
  StoreData store = meta.Finish();
  store.hist_max = options.histograms ? options.hist_max : 0;
  CC_RETURN_IF_ERROR(
      WriteStreamedStore(store, n_entries, hist_bytes, parts, out, callbacks.write_progress));
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
  uint64_t hist_bytes = 0;
  EntryBuffer scratch;
  while (source->next_gene() != kNoGene) {
    CC_RETURN_IF_ERROR(source->TakeRun(0, &scratch));
    n_entries += static_cast<int64_t>(scratch.size());
    hist_bytes += scratch.hist.size();
    scratch.Clear();
  }
  CC_RETURN_IF_ERROR(source->Start(&removal.new_gene, &removal.new_group, window, true));
  CC_RETURN_IF_ERROR(WriteStreamedStore(removal.meta, n_entries, hist_bytes, {{source.get(), 0}},
                                        *output, callbacks.write_progress));
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
  uint64_t hist_bytes = 0;
  double hist_max = 0;
  for (const auto& path : stores) {
    NoteActivity("reading the metadata of " + Quote(path));
    StoreData part;
    CC_ASSIGN_OR_RETURN(auto source, StoreFileSource::Open(path, &part));
    if (!sources.empty() && part.hist_max != hist_max)
      return Status::InvalidArgument(
          "cannot merge " + Quote(path) + " (" + LayoutName(part.hist_max) + ") with " +
          Quote(stores.front()) + " (" + LayoutName(hist_max) +
          "): merged stores must share one histogram layout; rebuild one of them with the "
          "other's (--hist-max, or --no-histograms)");
    hist_max = part.hist_max;
    hist_bytes += source->hist_bytes();
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
  if (callbacks.note)
    for (const auto& note : meta.notes()) callbacks.note(note);
  StoreData store = meta.Finish();
  store.hist_max = hist_max;
  CC_RETURN_IF_ERROR(
      WriteStreamedStore(store, n_entries, hist_bytes, parts, *output, callbacks.write_progress));
  return Summarise(store, n_entries);
}

}  // namespace cellcube
