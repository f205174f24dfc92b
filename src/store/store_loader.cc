// Reading a store's metadata, or a whole store into StoreData, through the h5ad
// reader; formats 1 to 3 (docs/FORMAT.md). Everything read is checked before use.
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <limits>

#include "cellcube/h5ad.h"
#include "cellcube/store_data.h"
#include "store/entry_rules.h"
#include "store/store_layout.h"
#include "store/store_loader.h"

#include "histogram/histogram.h"
#include "util/text.h"

namespace cellcube {
namespace {

using h5ad::Column;
using h5ad::File;

// Per-row strings of a column ("" for missing).
std::vector<std::string> Expand(const Column& col) {
  std::vector<std::string> out;
  out.reserve(col.codes.size());
  for (int32_t c : col.codes) out.push_back(c < 0 ? "" : col.labels[static_cast<size_t>(c)]);
  return out;
}

Result<int> CheckFormat(const File& f) {
  const std::string root = store_layout::kUnsGroup;
  auto format = f.ReadScalarString(root + "/format");
  if (!format.ok() || *format != store_layout::kFormatName)
    return Status::InvalidArgument("'" + f.path() +
                                   "' is an .h5ad file but not a cellcube store (build one with "
                                   "'cellcube build')");
  CC_ASSIGN_OR_RETURN(std::string version, f.ReadScalarString(root + "/format_version"));
  if (version == "1") return 1;
  if (version == "2") return 2;
  if (version == kStoreFormatVersion) return 3;
  return Status::Unsupported("'" + f.path() + "' is a cellcube store of format version " + version +
                             "; this cellcube reads versions 1 to " + kStoreFormatVersion +
                             " (a newer cellcube wrote it)");
}

Status LoadGroups(const File& f, StoreData* s) {
  CC_ASSIGN_OR_RETURN(auto obs, f.ObsInfo());
  for (const auto& name : obs.column_names) {
    if (name == store_layout::kNCellsColumn) continue;
    CC_ASSIGN_OR_RETURN(Column col, f.ReadObsColumn(name));
    s->columns.push_back(name);
    s->labels.push_back(std::move(col.labels));
    s->codes.push_back(std::move(col.codes));
  }
  CC_ASSIGN_OR_RETURN(s->n_cells,
                      f.ReadIntegers(std::string("obs/") + store_layout::kNCellsColumn));
  return Status::Ok();
}

// The entries, whole (LoadStore); format 1's sumsq becomes m2.
Status LoadEntries(const File& f, int version, StoreData* s) {
  const EntryArrayNames names = EntryArraysOf(version);
  CC_ASSIGN_OR_RETURN(s->indptr, f.ReadIntegers(names.indptr));
  CC_ASSIGN_OR_RETURN(auto groups, f.ReadIntegers(names.indices));
  CC_ASSIGN_OR_RETURN(auto nnz_values, f.ReadDoubles(names.nnz));
  CC_ASSIGN_OR_RETURN(s->sum, f.ReadDoubles(names.sum));
  CC_ASSIGN_OR_RETURN(s->m2, f.ReadDoubles(names.second));
  if (nnz_values.size() != groups.size() || s->sum.size() != groups.size() ||
      s->m2.size() != groups.size())
    return Status::Corrupt("store layers have different numbers of entries");
  s->group.reserve(groups.size());
  for (int64_t g : groups) {
    if (g < 0 || g >= s->n_groups()) return Status::Corrupt("store entry group out of range");
    s->group.push_back(static_cast<int32_t>(g));
  }
  s->nnz.reserve(groups.size());
  for (double v : nnz_values) {
    if (!(v >= 0 && v <= UINT32_MAX)) return Status::Corrupt("store nnz out of range");
    s->nnz.push_back(static_cast<uint32_t>(v));
  }
  if (version == 1)
    for (size_t k = 0; k < groups.size(); ++k)
      s->m2[k] = M2FromSumsq(s->sum[k], s->m2[k], s->n_cells[static_cast<size_t>(groups[k])]);
  return Status::Ok();
}

// A (genes, datasets) array of raw.cellcube, whole, checked for its shape.
Result<std::vector<int64_t>> ReadPairs(const File& f, const char* path, const StoreData& s) {
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, f.ShapeOf(path));
  if (shape != std::vector<int64_t>{s.n_genes(), static_cast<int64_t>(s.datasets.size())})
    return Status::Corrupt(std::string(path) + " is not a (genes, datasets) array");
  return f.ReadIntegers(path);
}

// Gene g's records, read from `data` at [begin, end) into s's hist_end (each checked).
Status ReadGeneRecords(const std::vector<uint8_t>& data, int64_t g, uint64_t begin, uint64_t end,
                       const std::vector<bool>& not_binned, StoreData* s) {
  uint64_t at = begin;
  for (int64_t k = s->indptr[g]; k < s->indptr[g + 1]; ++k) {
    const int32_t d = s->codes[0][static_cast<size_t>(s->group[k])];
    const char* why = nullptr;
    const size_t length = not_binned[static_cast<size_t>(d)]
                              ? 0
                              : histogram::SkipRecord(data.data() + at, end - at, s->nnz[k], &why);
    if (why)
      return Status::Corrupt("entry " + std::to_string(k) + " of gene '" + s->gene_ids[g] +
                             "': " + why);
    at += length;
    s->hist_end[static_cast<size_t>(k)] = at;
  }
  if (at != end)
    return Status::Corrupt("the histogram records of gene '" + s->gene_ids[g] +
                           "' do not fill its bytes");
  return Status::Ok();
}

// Format 3's histogram records, whole (after the entries): every entry's record into
// hist_end/hist_data, with hist_indptr and hist_offsets checked against them.
Status LoadRecords(const File& f, const std::vector<int64_t>& entry_offsets, StoreData* s) {
  const auto n_datasets = static_cast<int64_t>(s->datasets.size());
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> indptr, f.ReadIntegers(store_layout::kHistIndptr));
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, f.ShapeOf(store_layout::kHistData));
  if (shape.size() != 1 || static_cast<int64_t>(indptr.size()) != s->n_genes() + 1 ||
      indptr[0] != 0 || indptr.back() != shape[0])
    return Status::Corrupt("raw.cellcube/hist_indptr does not span raw.cellcube/hist_data");
  s->hist_data.resize(static_cast<size_t>(shape[0]));
  CC_RETURN_IF_ERROR(f.ReadBytesInto(store_layout::kHistData, s->hist_data.data(),
                                     static_cast<uint64_t>(shape[0])));
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> offsets, ReadPairs(f, store_layout::kHistOffsets, *s));
  std::vector<bool> not_binned;
  for (const DatasetRecord& d : s->datasets)
    not_binned.push_back(d.negative_values == NegativeValues::kSome);
  s->hist_end.assign(s->group.size(), 0);
  for (int64_t g = 0; g < s->n_genes(); ++g) {
    if (indptr[g + 1] < indptr[g]) return Status::Corrupt("raw.cellcube/hist_indptr decreases");
    CC_RETURN_IF_ERROR(ReadGeneRecords(s->hist_data, g, static_cast<uint64_t>(indptr[g]),
                                       static_cast<uint64_t>(indptr[g + 1]), not_binned, s));
    for (int64_t d = 0; d < n_datasets; ++d) {
      const int64_t e = entry_offsets[static_cast<size_t>(g * n_datasets + d)];
      const uint64_t start = e == 0 ? static_cast<uint64_t>(indptr[g])
                                    : s->hist_end[static_cast<size_t>(s->indptr[g] + e - 1)];
      if (offsets[static_cast<size_t>(g * n_datasets + d)] !=
          static_cast<int64_t>(start) - indptr[g])
        return Status::Corrupt("raw.cellcube/hist_offsets does not match the records of gene '" +
                               s->gene_ids[g] + "'");
    }
  }
  return Status::Ok();
}

// Format 3's arrays outside the layers (docs/FORMAT.md "raw.cellcube"), whole:
// entry_offsets checked against the entries, then the histogram records.
Status LoadRawArrays(const File& f, StoreData* s) {
  const auto n_datasets = static_cast<int64_t>(s->datasets.size());
  const std::vector<int64_t> starts = DatasetGroupStarts(s->codes[0], s->datasets.size());
  if (starts.empty()) return Status::Corrupt("the groups are not in the order of their datasets");
  if (static_cast<int64_t>(s->indptr.size()) != s->n_genes() + 1 || s->indptr[0] != 0 ||
      s->indptr.back() != s->n_entries())
    return Status::Corrupt("indptr does not match the entries");
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> offsets, ReadPairs(f, store_layout::kEntryOffsets, *s));
  std::vector<uint32_t> row(static_cast<size_t>(n_datasets));
  for (int64_t g = 0; g < s->n_genes(); ++g) {
    if (s->indptr[g + 1] < s->indptr[g]) return Status::Corrupt("indptr decreases");
    EntryOffsetsOfGene(s->group.data() + s->indptr[g],
                       static_cast<size_t>(s->indptr[g + 1] - s->indptr[g]), starts, row.data());
    for (int64_t d = 0; d < n_datasets; ++d)
      if (offsets[static_cast<size_t>(g * n_datasets + d)] != row[static_cast<size_t>(d)])
        return Status::Corrupt("raw.cellcube/entry_offsets does not match the entries of gene '" +
                               s->gene_ids[g] + "'");
  }
  if (!s->has_histograms()) return Status::Ok();
  return LoadRecords(f, offsets, s);
}

// The datasets' negative-values flags: recorded since stores flag scaled data; absent from
// stores written before, whose datasets are kUnknown.
Result<std::vector<NegativeValues>> ReadNegativeValues(const File& f,
                                                       const h5ad::DataFrameInfo& frame,
                                                       size_t n_datasets) {
  std::vector<NegativeValues> out(n_datasets, NegativeValues::kUnknown);
  if (std::find(frame.column_names.begin(), frame.column_names.end(), "negative_values") ==
      frame.column_names.end())
    return out;
  CC_ASSIGN_OR_RETURN(auto flags, f.ReadIntegers(std::string(store_layout::kUnsGroup) +
                                                 "/datasets/negative_values"));
  if (flags.size() != n_datasets)
    return Status::Corrupt("store: dataset columns of different lengths");
  for (size_t d = 0; d < n_datasets; ++d) {
    if (flags[d] < -1 || flags[d] > 1)
      return Status::Corrupt("store: a dataset's negative_values flag is " +
                             std::to_string(flags[d]) + ", not -1, 0 or 1");
    out[d] = static_cast<NegativeValues>(flags[d]);
  }
  return out;
}

// The datasets' counts of values above the histograms' upper edge: recorded by stores
// with histograms (format 3); -1 elsewhere.
Result<std::vector<int64_t>> ReadAboveHistMax(const File& f, const h5ad::DataFrameInfo& frame,
                                              size_t n_datasets) {
  std::vector<int64_t> out(n_datasets, -1);
  if (std::find(frame.column_names.begin(), frame.column_names.end(), "values_above_hist_max") ==
      frame.column_names.end())
    return out;
  CC_ASSIGN_OR_RETURN(out, f.ReadIntegers(std::string(store_layout::kUnsGroup) +
                                          "/datasets/values_above_hist_max"));
  if (out.size() != n_datasets)
    return Status::Corrupt("store: dataset columns of different lengths");
  for (int64_t v : out)
    if (v < -1)
      return Status::Corrupt("store: a dataset's values_above_hist_max is " + std::to_string(v));
  return out;
}

// The histogram layer's upper edge (uns/cellcube/histograms/max), 0 when the store has
// none (--no-histograms, or an older format).
Result<double> ReadHistMax(const File& f, int format_version) {
  if (format_version < 3) return 0.0;
  const std::string group = std::string(store_layout::kUnsGroup) + "/" + store_layout::kHistograms;
  if (!f.Exists(group) || !f.Exists(store_layout::kRawGroup)) return 0.0;
  CC_ASSIGN_OR_RETURN(auto bins, f.ReadIntegers(group + "/bins"));
  CC_ASSIGN_OR_RETURN(auto max, f.ReadDoubles(group + "/max"));
  if (bins.size() != 1 || bins[0] != histogram::kBins)
    return Status::Corrupt("store: its histograms do not have " + std::to_string(histogram::kBins) +
                           " bins");
  if (max.size() != 1 || !histogram::Layout::Valid(max[0]))
    return Status::Corrupt("store: its histograms' upper edge is not a number above 0");
  return max[0];
}

Status LoadDatasets(const File& f, StoreData* s) {
  const std::string root = std::string(store_layout::kUnsGroup) + "/datasets";
  CC_ASSIGN_OR_RETURN(auto frame, f.DataFrameAt(root));
  CC_ASSIGN_OR_RETURN(auto names, f.ReadIndexAt(frame));
  auto strings = [&](const char* col) -> Result<std::vector<std::string>> {
    CC_ASSIGN_OR_RETURN(Column c, f.ReadColumnAt(frame, col));
    return Expand(c);
  };
  auto ints = [&](const char* col) { return f.ReadIntegers(root + "/" + col); };
  CC_ASSIGN_OR_RETURN(auto sources, strings("source"));
  CC_ASSIGN_OR_RETURN(auto matrices, strings("matrix"));
  CC_ASSIGN_OR_RETURN(auto transforms, strings("transform"));
  CC_ASSIGN_OR_RETURN(auto cell_type_cols, strings("cell_type_column"));
  CC_ASSIGN_OR_RETURN(auto groupbys, strings("groupby"));
  CC_ASSIGN_OR_RETURN(auto symbol_cols, strings("gene_symbols_column"));
  // Recorded since build --donor; absent from stores written before.
  std::vector<std::string> donor_cols(names.size());
  if (std::find(frame.column_names.begin(), frame.column_names.end(), "donor_column") !=
      frame.column_names.end()) {
    CC_ASSIGN_OR_RETURN(donor_cols, strings("donor_column"));
    if (donor_cols.size() != names.size())
      return Status::Corrupt("store: dataset columns of different lengths");
  }
  CC_ASSIGN_OR_RETURN(std::vector<NegativeValues> negative,
                      ReadNegativeValues(f, frame, names.size()));
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> above, ReadAboveHistMax(f, frame, names.size()));
  CC_ASSIGN_OR_RETURN(auto sizes, ints("source_size"));
  CC_ASSIGN_OR_RETURN(auto mtimes, ints("source_mtime"));
  CC_ASSIGN_OR_RETURN(auto cells, ints("n_cells"));
  CC_ASSIGN_OR_RETURN(auto genes, ints("n_genes"));
  CC_ASSIGN_OR_RETURN(auto groups, ints("n_groups"));
  const size_t n = names.size();
  for (const auto* column : {&sizes, &mtimes, &cells, &genes, &groups})
    if (column->size() != n) return Status::Corrupt("store: dataset columns of different lengths");
  for (size_t d = 0; d < n; ++d) {
    DatasetRecord r;
    r.name = names[d];
    r.source = sources[d];
    r.source_size = sizes.at(d);
    r.source_mtime = mtimes.at(d);
    r.n_cells = cells.at(d);
    r.n_genes = genes.at(d);
    r.n_groups = groups.at(d);
    r.matrix = matrices[d];
    r.transform = transforms[d];
    r.cell_type_column = cell_type_cols[d];
    r.groupby = SplitList(groupbys[d]);
    r.gene_symbols_column = symbol_cols[d];
    r.donor_column = donor_cols[d];
    r.negative_values = negative[d];
    r.values_above_hist_max = above[d];
    s->datasets.push_back(std::move(r));
  }
  return Status::Ok();
}

// One string column of var as a list: in place in `map` when the store holds it as
// fixed-width strings there (as cellcube writes them), else read into memory.
Result<StringList> ReadNameList(const File& f, const std::string& dataset, MappedBytes map) {
  auto e = f.Locate(dataset);
  if (e.ok() && e->in_place && e->string_width > 0 && map.data && e->offset <= map.size &&
      e->bytes <= map.size - e->offset)
    return StringList::FixedWidth(map.data + e->offset, e->string_width,
                                  static_cast<size_t>(e->elements));
  CC_ASSIGN_OR_RETURN(auto strings, f.ReadStrings(dataset));
  return StringList(std::move(strings));
}

// The gene ids and symbols as lists (the StoreReader's form).
Status LoadGeneLists(const File& f, MappedBytes map, StoreMetadata* out) {
  CC_ASSIGN_OR_RETURN(h5ad::DataFrameInfo var, f.VarInfo());
  if (auto ids = ReadNameList(f, "var/" + var.index_name, map); ids.ok()) {
    out->gene_ids = std::move(*ids);
  } else {
    CC_ASSIGN_OR_RETURN(auto strings, f.ReadVarIndex());  // e.g. a compound 0.6 table
    out->gene_ids = StringList(std::move(strings));
  }
  const std::string symbols = std::string("var/") + store_layout::kSymbolColumn;
  if (auto plain = ReadNameList(f, symbols, map); plain.ok()) {
    out->gene_symbols = std::move(*plain);
  } else {
    CC_ASSIGN_OR_RETURN(Column column, f.ReadVarColumn(store_layout::kSymbolColumn));
    out->gene_symbols = StringList(Expand(column));
  }
  if (out->gene_symbols.size() != out->gene_ids.size())
    return Status::Corrupt("var 'symbol' and the var index have different lengths");
  if (out->gene_ids.size() >= static_cast<size_t>(INT32_MAX))
    return Status::Corrupt("too many genes");
  out->n_genes = static_cast<int64_t>(out->gene_ids.size());
  return Status::Ok();
}

// Format 2: a packed bitset, one row of 8 * ceil(genes / 64) bytes per dataset.
// Format 2: a packed bitset, one row of 8 * ceil(genes / 64) bytes per dataset: read in
// place from `map` when the store is mapped and the array lies there as written, else
// read into memory. Either way every row is checked.
Result<MeasuredBits> LoadMeasuredBitset(const File& f, const StoreData& s, int64_t n_genes,
                                        MappedBytes map) {
  const std::string path = std::string(store_layout::kUnsGroup) + "/" + store_layout::kMeasured;
  CC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, f.ShapeOf(path));
  const auto n_datasets = static_cast<int64_t>(s.datasets.size());
  const int64_t words_per_row = (n_genes + 63) / 64;
  const uint64_t bytes = static_cast<uint64_t>(n_datasets * words_per_row) * 8;
  if (shape.size() != 2 || shape[0] != n_datasets || shape[1] != words_per_row * 8)
    return Status::Corrupt(path + " is not a (datasets, " + std::to_string(words_per_row * 8) +
                           ") array of bytes");
  MeasuredBits bits;
  CC_ASSIGN_OR_RETURN(h5ad::File::Extent e, f.Locate(path));
  if (std::endian::native == std::endian::little && map.data && e.in_place && e.bytes == bytes &&
      e.offset % 8 == 0 && e.offset <= map.size && bytes <= map.size - e.offset) {
    bits = MeasuredBits::View(n_genes, reinterpret_cast<const uint64_t*>(map.data + e.offset));
  } else {
    bits = MeasuredBits(n_datasets, n_genes);
    if (n_datasets > 0) CC_RETURN_IF_ERROR(f.ReadBytesInto(path, bits.mutable_row(0), bytes));
    if constexpr (std::endian::native == std::endian::big)
      for (int64_t d = 0; d < n_datasets; ++d)
        for (int64_t w = 0; w < words_per_row; ++w)
          bits.mutable_row(d)[w] = __builtin_bswap64(bits.row(d)[w]);
  }
  const int64_t tail = n_genes % 64;
  for (int64_t d = 0; d < n_datasets; ++d) {
    const uint64_t* row = bits.row(d);
    int64_t count = 0;
    for (int64_t w = 0; w < words_per_row; ++w) count += std::popcount(row[w]);
    if (tail && row[words_per_row - 1] >> tail)
      return Status::Corrupt(path + " marks genes beyond the last");
    if (count != s.datasets[static_cast<size_t>(d)].n_genes)
      return Status::Corrupt(path + " marks " + std::to_string(count) + " genes of dataset '" +
                             s.datasets[static_cast<size_t>(d)].name + "', which measured " +
                             std::to_string(s.datasets[static_cast<size_t>(d)].n_genes));
  }
  return bits;
}

// Format 1: per dataset, an ascending list of gene indices.
Result<MeasuredBits> LoadMeasuredLists(const File& f, const StoreData& s, int64_t n_genes) {
  const std::string root = store_layout::kUnsGroup;
  CC_ASSIGN_OR_RETURN(auto indptr, f.ReadIntegers(root + "/measured_indptr"));
  CC_ASSIGN_OR_RETURN(auto genes, f.ReadIntegers(root + "/measured_genes"));
  const auto n_datasets = static_cast<int64_t>(s.datasets.size());
  if (static_cast<int64_t>(indptr.size()) != n_datasets + 1 || indptr[0] != 0 ||
      indptr.back() != static_cast<int64_t>(genes.size()))
    return Status::Corrupt("uns/cellcube/measured_indptr does not match the datasets");
  MeasuredBits bits(n_datasets, n_genes);
  for (int64_t d = 0; d < n_datasets; ++d) {
    if (indptr[d + 1] < indptr[d] || indptr[d + 1] > indptr.back())
      return Status::Corrupt("uns/cellcube/measured_indptr decreases");
    for (int64_t k = indptr[d]; k < indptr[d + 1]; ++k) {
      if (genes[k] < 0 || genes[k] >= n_genes || (k > indptr[d] && genes[k] <= genes[k - 1]))
        return Status::Corrupt("uns/cellcube/measured_genes of dataset '" +
                               s.datasets[static_cast<size_t>(d)].name +
                               "' are out of range or not ascending");
      bits.Set(d, genes[k]);
    }
  }
  return bits;
}

}  // namespace

EntryArrayNames EntryArraysOf(int format_version) {
  const std::string layers = std::string(store_layout::kLayersGroup) + "/";
  const std::string nnz = layers + store_layout::kLayerNnz, sum = layers + store_layout::kLayerSum;
  const std::string second =
      layers + (format_version == 1 ? store_layout::kLayerSumsq : store_layout::kLayerM2);
  return {nnz + "/indptr",  nnz + "/indices",   nnz + "/data",
          sum + "/data",    second + "/data",   sum + "/indptr",
          sum + "/indices", second + "/indptr", second + "/indices"};
}

// The embedded ontology terms (docs/FORMAT.md "Ontology terms"); none when absent.
// Their invariants are checked with the rest of the metadata (StoreData::ValidateMetadata).
Status ReadOntology(const File& f, StoreOntologies* o) {
  const std::string group = std::string(store_layout::kUnsGroup) + "/" + store_layout::kOntology;
  if (!f.Exists(group)) return Status::Ok();
  auto ints32 = [&](const char* name, std::vector<int32_t>* out) -> Status {
    CC_ASSIGN_OR_RETURN(std::vector<int64_t> v, f.ReadIntegers(group + "/" + name));
    out->clear();
    for (int64_t x : v) {
      if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
        return Status::Corrupt(group + "/" + name + " holds a value out of range");
      out->push_back(static_cast<int32_t>(x));
    }
    return Status::Ok();
  };
  CC_ASSIGN_OR_RETURN(auto names, f.ReadStrings(group + "/ontology_names"));
  CC_ASSIGN_OR_RETURN(auto versions, f.ReadStrings(group + "/ontology_versions"));
  if (names.empty() || names.size() != versions.size())
    return Status::Corrupt(group + ": ontology names and versions do not match");
  o->ontologies.clear();
  for (size_t i = 0; i < names.size(); ++i) o->ontologies.push_back({names[i], versions[i]});
  CC_ASSIGN_OR_RETURN(o->term_ids, f.ReadStrings(group + "/term_ids"));
  CC_ASSIGN_OR_RETURN(o->term_labels, f.ReadStrings(group + "/term_labels"));
  CC_RETURN_IF_ERROR(ints32("term_ontology", &o->term_ontology));
  CC_ASSIGN_OR_RETURN(o->ancestor_begin, f.ReadIntegers(group + "/ancestor_begin"));
  CC_RETURN_IF_ERROR(ints32("ancestors", &o->ancestors));
  CC_RETURN_IF_ERROR(ints32("ancestor_distance", &o->ancestor_distance));
  CC_ASSIGN_OR_RETURN(o->columns, f.ReadStrings(group + "/columns"));
  return ints32("column_ontology", &o->column_ontology);
}

Result<StoreMetadata> LoadStoreMetadata(const File& file, const MetadataOptions& options) {
  StoreMetadata out;
  CC_ASSIGN_OR_RETURN(out.format_version, CheckFormat(file));
  StoreData& s = out.meta;
  CC_RETURN_IF_ERROR(LoadGroups(file, &s));
  switch (options.names) {
    case MetadataOptions::Names::kStrings:  // the lists, read into memory, as vectors
      CC_RETURN_IF_ERROR(LoadGeneLists(file, {}, &out));
      s.gene_ids = out.gene_ids.ToVector();
      s.gene_symbols = out.gene_symbols.ToVector();
      out.gene_ids = out.gene_symbols = StringList();
      break;
    case MetadataOptions::Names::kLists:
      CC_RETURN_IF_ERROR(LoadGeneLists(file, options.map, &out));
      break;
    case MetadataOptions::Names::kCountOnly: {
      CC_ASSIGN_OR_RETURN(h5ad::DataFrameInfo var, file.VarInfo());
      out.n_genes = var.n_rows;
      break;
    }
  }
  CC_RETURN_IF_ERROR(LoadDatasets(file, &s));
  CC_ASSIGN_OR_RETURN(s.hist_max, ReadHistMax(file, out.format_version));
  CC_RETURN_IF_ERROR(ReadOntology(file, &s.ontology));
  // A store re-saved by another tool (anndata's write_h5ad) lost raw.cellcube, which
  // anndata does not read: it has no histograms any more (docs/FORMAT.md).
  if (out.format_version >= 3 && !file.Exists(store_layout::kRawGroup))
    for (DatasetRecord& d : s.datasets) d.values_above_hist_max = -1;
  CC_RETURN_IF_ERROR(s.ValidateMetadata());
  if (out.format_version == 1) {
    CC_ASSIGN_OR_RETURN(out.measured, LoadMeasuredLists(file, s, out.n_genes));
  } else {
    CC_ASSIGN_OR_RETURN(out.measured, LoadMeasuredBitset(file, s, out.n_genes, options.map));
  }
  if (options.measured_gene_lists)
    for (size_t d = 0; d < s.datasets.size(); ++d)
      for (int64_t g = 0; g < out.n_genes; ++g)
        if (out.measured.Get(static_cast<int64_t>(d), g))
          s.datasets[d].measured_genes.push_back(static_cast<int32_t>(g));
  return out;
}

Result<StoreData> LoadStore(const std::string& path) {
  auto in_context = [&](const Status& st) { return st.WithContext("store '" + path + "'"); };
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  MetadataOptions options;
  options.measured_gene_lists = true;
  auto meta = LoadStoreMetadata(*file, options);
  if (!meta.ok()) return in_context(meta.status());
  StoreData s = std::move(meta->meta);
  if (Status st = LoadEntries(*file, meta->format_version, &s); !st.ok()) return in_context(st);
  if (meta->format_version >= 3 && file->Exists(store_layout::kRawGroup))
    if (Status st = LoadRawArrays(*file, &s); !st.ok()) return in_context(st);
  if (Status st = s.Validate(); !st.ok()) return in_context(st);
  return s;
}

Result<std::unique_ptr<File>> OpenStoreMetadata(const std::string& path, StoreMetadata* out) {
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  MetadataOptions options;
  options.measured_gene_lists = true;
  auto meta = LoadStoreMetadata(*file, options);
  if (!meta.ok()) return meta.status().WithContext("store '" + path + "'");
  *out = std::move(*meta);
  return file;
}

MeasuredBits MeasuredGeneBits(const StoreData& s) {
  MeasuredBits bits(static_cast<int64_t>(s.datasets.size()), s.n_genes());
  for (size_t d = 0; d < s.datasets.size(); ++d)
    for (int32_t g : s.datasets[d].measured_genes) bits.Set(static_cast<int64_t>(d), g);
  return bits;
}

Result<StoreMetadata> ReadStoreMetadata(const std::string& path) {
  auto in_context = [&](const Status& st) { return st.WithContext("store '" + path + "'"); };
  CC_ASSIGN_OR_RETURN(auto file, File::Open(path));
  MetadataOptions options;
  options.names = MetadataOptions::Names::kCountOnly;  // info shows counts, not names
  auto meta = LoadStoreMetadata(*file, options);
  if (!meta.ok()) return in_context(meta.status());
  auto extent = file->Locate(EntryArraysOf(meta->format_version).indices);
  if (!extent.ok()) return in_context(extent.status());
  meta->n_entries = extent->elements;
  return std::move(*meta);
}

}  // namespace cellcube
