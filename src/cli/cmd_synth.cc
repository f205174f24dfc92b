// `cellcube synth -o DIR`: writes realistic synthetic .h5ad files (docs/SYNTH.md),
// streaming each count matrix in blocks so that memory stays bounded.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <thread>

#include "cellcube/h5ad_writer.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "synth/catalog.h"
#include "synth/synth.h"
#include "util/text.h"

namespace cellcube::cli {

const char* const kSynthHelp =
    R"(usage: cellcube synth -o DIR [--datasets N] [--cells N] [--genes N] [--seed N] [--term-ids]
                      [--quiet]

Writes synthetic single-cell RNA-seq datasets DIR/synth_01.h5ad, synth_02.h5ad, ...
(AnnData >= 0.8 files that anndata and scanpy read) to try cellcube on and to
benchmark it. Each holds raw counts in X (CSR, float32 integers, gzip) with realistic
structure: 10-25 cell types with real marker genes (CD3E, MS4A1, LYZ, ALB, SFTPC, ...),
donors, sexes, a disease with cancer stages; obs columns cell_type, tissue, disease,
cancer_stage, sex, donor. See docs/SYNTH.md for the model.

  -o, --output DIR   output directory (created if missing; files in it are overwritten)
  --datasets N       number of files, 1 to 99 (default 3)
  --cells N          cells per dataset, 1 to 2147483647 (default 20000)
  --genes N          genes per dataset, 300 to 100000 (default 2000)
  --seed N           random seed (default 1): the same seed writes the same files
  --term-ids         also write CELLxGENE's term id columns: cell_type_ontology_term_id
                     (Cell Ontology), tissue_ontology_term_id (UBERON) and
                     disease_ontology_term_id (MONDO; PATO:0000461 for normal), for
                     'cellcube build --ontology' (docs/ONTOLOGY.md)
  --quiet            no progress line on stderr
  -h, --help         show this help

Prints one line per file written: path, cells, genes, stored counts, size.
)";

namespace {

namespace fs = std::filesystem;
using h5ad::ColumnData;
using h5ad::ElemType;

constexpr int64_t kChunkElements = int64_t{1} << 18;  // 1 MB of float32, as h5py chunks
constexpr int kGzipLevel = 4;

struct Written {
  int64_t nnz = 0;
  uint64_t bytes = 0;
};

ColumnData Categorical(const synth::Categorical& c) {
  ColumnData col;
  col.name = c.name;
  col.type = ColumnData::Type::kCategorical;
  col.labels = c.categories;
  col.codes = c.codes;
  col.ordered = c.ordered;
  return col;
}

// A categorical column of `values`, categories sorted as pandas sorts them.
ColumnData CategoricalOf(const std::string& name, const std::vector<std::string>& values) {
  ColumnData col;
  col.name = name;
  col.type = ColumnData::Type::kCategorical;
  col.labels = values;
  std::sort(col.labels.begin(), col.labels.end());
  col.labels.erase(std::unique(col.labels.begin(), col.labels.end()), col.labels.end());
  col.codes.reserve(values.size());
  for (const auto& v : values)
    col.codes.push_back(static_cast<int32_t>(
        std::lower_bound(col.labels.begin(), col.labels.end(), v) - col.labels.begin()));
  return col;
}

template <typename Index>
Status AppendIndptr(h5ad::Writer& w, const synth::CsrRows& rows, int64_t* nnz, bool first) {
  std::vector<Index> indptr;
  indptr.reserve(rows.row_nnz.size() + 1);
  if (first) indptr.push_back(0);
  for (int64_t n : rows.row_nnz) indptr.push_back(static_cast<Index>(*nnz += n));
  return w.Append("X/indptr", indptr.data(), static_cast<int64_t>(indptr.size()));
}

// scanpy-style QC metrics of every cell and gene, summed as the matrix streams past
// (the matrix itself is never held whole).
struct QcMetrics {
  std::vector<int64_t> cell_genes;  // per cell: genes with a count
  std::vector<double> cell_total;   // per cell: sum of its counts
  std::vector<int64_t> gene_cells;  // per gene: cells with a count
  std::vector<double> gene_total;   // per gene: sum of its counts
};

// The CSR index type: 32-bit whenever no count of stored values can outgrow it (as
// scipy does).
bool NeedsWideIndices(const synth::Dataset& d) {
  return d.n_cells() > std::numeric_limits<int32_t>::max() / d.n_genes();
}

Status CreateMatrix(h5ad::Writer& w, bool wide) {
  const ElemType index_type = wide ? ElemType::kInt64 : ElemType::kInt32;
  const h5ad::Compression gzip{kGzipLevel, kChunkElements};
  CC_RETURN_IF_ERROR(w.CreateGroup("X"));
  CC_RETURN_IF_ERROR(w.CreateAppendable("X/data", ElemType::kFloat32, gzip));
  CC_RETURN_IF_ERROR(w.CreateAppendable("X/indices", index_type, gzip));
  return w.CreateAppendable("X/indptr", index_type, gzip);
}

// Blocks of about a million stored values: large enough to keep the threads busy,
// small enough to bound memory.
int64_t RowsPerBlock(const synth::Dataset& d) {
  const auto per_row = static_cast<double>(d.n_genes()) * d.target_density();
  return std::clamp<int64_t>(static_cast<int64_t>((1 << 20) / std::max(1.0, per_row)), 64, 1 << 16);
}

// Appends a block of rows to X; *nnz: the values stored so far (indptr's last entry).
// Wide indices are widened here: the generator makes 32-bit ones.
Status AppendRows(h5ad::Writer& w, const synth::CsrRows& rows, bool wide, bool first,
                  std::vector<int64_t>* wide_indices, int64_t* nnz) {
  const auto count = static_cast<int64_t>(rows.data.size());
  CC_RETURN_IF_ERROR(w.Append("X/data", rows.data.data(), count));
  if (wide) {
    wide_indices->assign(rows.indices.begin(), rows.indices.end());
    CC_RETURN_IF_ERROR(w.Append("X/indices", wide_indices->data(), count));
    return AppendIndptr<int64_t>(w, rows, nnz, first);
  }
  CC_RETURN_IF_ERROR(w.Append("X/indices", rows.indices.data(), count));
  return AppendIndptr<int32_t>(w, rows, nnz, first);
}

void AddToMetrics(const synth::CsrRows& rows, QcMetrics* qc) {
  for (int64_t i = 0; i < rows.n_rows; ++i) {
    auto c = static_cast<size_t>(rows.row_begin + i);
    qc->cell_genes[c] = rows.row_nnz[static_cast<size_t>(i)];
    qc->cell_total[c] = rows.row_total[static_cast<size_t>(i)];
  }
  for (size_t g = 0; g < qc->gene_cells.size(); ++g) {
    qc->gene_cells[g] += rows.gene_nnz[g];
    qc->gene_total[g] += rows.gene_sum[g];
  }
}

// Writes X (CSR, gzip), generated block by block on worker threads, and fills *qc.
// Returns the number of stored values.
Result<int64_t> WriteMatrix(const synth::Dataset& d, h5ad::Writer& w, const std::string& label,
                            bool quiet, QcMetrics* qc) {
  const int64_t n_cells = d.n_cells(), n_genes = d.n_genes();
  const bool wide = NeedsWideIndices(d);
  CC_RETURN_IF_ERROR(CreateMatrix(w, wide));
  const int threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  synth::RowStream stream(d, RowsPerBlock(d), threads);
  qc->cell_genes.resize(static_cast<size_t>(n_cells));
  qc->cell_total.resize(static_cast<size_t>(n_cells));
  qc->gene_cells.assign(static_cast<size_t>(n_genes), 0);
  qc->gene_total.assign(static_cast<size_t>(n_genes), 0);
  int64_t nnz = 0;
  ProgressBar progress(quiet);
  synth::CsrRows rows;
  std::vector<int64_t> wide_indices;
  bool first = true;
  while (true) {
    CC_ASSIGN_OR_RETURN(bool more, stream.Next(&rows));
    if (!more) break;
    CC_RETURN_IF_ERROR(AppendRows(w, rows, wide, first, &wide_indices, &nnz));
    first = false;
    AddToMetrics(rows, qc);
    progress.Update(rows.row_begin + rows.n_rows, n_cells, label);
  }
  CC_RETURN_IF_ERROR(w.MarkSparse("X", true, n_cells, n_genes));
  progress.Finish();
  return nnz;
}

// obs: the plan's categorical columns and the cells' QC metrics, indexed by barcode.
// With `term_ids`, cell_type, tissue and disease each get their CELLxGENE pair column,
// COL_ontology_term_id: the same codes over the values' term ids (synth::TermId).
Status WriteObs(h5ad::Writer& w, const synth::Dataset& d, bool term_ids, QcMetrics* qc) {
  std::vector<ColumnData> cols;
  for (const auto& c : d.obs()) cols.push_back(Categorical(c));
  for (const auto& c : d.obs()) {
    if (!term_ids || (c.name != "cell_type" && c.name != "tissue" && c.name != "disease")) continue;
    synth::Categorical ids = c;
    ids.name = c.name + "_ontology_term_id";
    for (auto& value : ids.categories) value = synth::TermId(value);
    cols.push_back(Categorical(ids));
  }
  cols.push_back(ColumnData::Int64("n_genes_by_counts", std::move(qc->cell_genes)));
  cols.push_back(ColumnData::Float64("total_counts", std::move(qc->cell_total)));
  return w.WriteDataFrame("obs", d.Barcodes(), cols);
}

// var: gene ids (the index), symbols (feature_name, as CELLxGENE names it), biotypes,
// the mitochondrial flag and the genes' QC metrics.
Status WriteVar(h5ad::Writer& w, const synth::Dataset& d, QcMetrics* qc) {
  std::vector<ColumnData> cols;
  cols.push_back(CategoricalOf("feature_name", d.gene_symbols()));
  cols.push_back(CategoricalOf("gene_biotype", d.gene_biotypes()));
  ColumnData mt;
  mt.name = "mt";
  mt.type = ColumnData::Type::kBool;
  for (const auto& s : d.gene_symbols()) mt.ints.push_back(s.rfind("MT-", 0) == 0);
  cols.push_back(std::move(mt));
  cols.push_back(ColumnData::Int64("n_cells_by_counts", std::move(qc->gene_cells)));
  cols.push_back(ColumnData::Float64("total_counts", std::move(qc->gene_total)));
  return w.WriteDataFrame("var", d.gene_ids(), cols);
}

// The groups anndata expects even when empty, and the dataset's title in uns.
Status WriteEmptyGroupsAndTitle(h5ad::Writer& w, const synth::Dataset& d) {
  for (const char* group : {"layers", "obsm", "obsp", "varm", "varp"})
    CC_RETURN_IF_ERROR(w.CreateGroup(group, "dict", "0.1.0"));
  CC_RETURN_IF_ERROR(w.CreateGroup("uns", "dict", "0.1.0"));
  return w.WriteScalarString("uns/title", d.title());
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

Result<Written> WriteDataset(const synth::Dataset& d, const std::string& path,
                             const std::string& label, bool quiet, bool term_ids) {
  CC_ASSIGN_OR_RETURN(auto writer, h5ad::Writer::Create(path));
  h5ad::Writer& w = *writer;
  QcMetrics qc;
  Written out;
  CC_ASSIGN_OR_RETURN(out.nnz, WriteMatrix(d, w, label, quiet, &qc));
  CC_RETURN_IF_ERROR(WriteObs(w, d, term_ids, &qc));
  CC_RETURN_IF_ERROR(WriteVar(w, d, &qc));
  CC_RETURN_IF_ERROR(WriteEmptyGroupsAndTitle(w, d));
  CC_RETURN_IF_ERROR(w.Close());
  out.bytes = FileSize(path);
  return out;
}

Status PrepareDirectory(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    return Status::InvalidArgument("output directory '" + dir + "' exists but is not a directory");
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError("cannot create output directory '" + dir + "': " + ec.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return Status::IoError("cannot write to output directory '" + dir +
                           "': " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Status RunSynth(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {{"o", true},
                                                    {"output", true},
                                                    {"datasets", true},
                                                    {"cells", true},
                                                    {"genes", true},
                                                    {"seed", true},
                                                    {"term-ids", false},
                                                    {"quiet", false}}));
  if (!args.positionals().empty())
    return Status::Usage("synth takes no positional arguments, got '" + args.positionals()[0] +
                         "' (see 'cellcube synth --help')");
  if (args.Get("o") && args.Get("output"))
    return Status::Usage("give the output directory once: -o or --output");
  auto dir = args.Get("o") ? args.Get("o") : args.Get("output");
  if (!dir || dir->empty())
    return Status::Usage("synth needs an output directory: -o DIR (see 'cellcube synth --help')");
  CC_ASSIGN_OR_RETURN(int64_t n_datasets, args.GetInt("datasets", 3, 1, 99));
  synth::Options options;
  CC_ASSIGN_OR_RETURN(options.cells, args.GetInt("cells", 20000, 1, synth::kMaxCells));
  CC_ASSIGN_OR_RETURN(options.genes,
                      args.GetInt("genes", 2000, synth::kMinGenes, synth::kMaxGenes));
  CC_ASSIGN_OR_RETURN(int64_t seed, args.GetInt("seed", 1, 0, std::numeric_limits<int64_t>::max()));
  options.seed = static_cast<uint64_t>(seed);
  const bool quiet = args.Flag("quiet");
  CC_RETURN_IF_ERROR(PrepareDirectory(*dir));

  for (int i = 0; i < n_datasets; ++i) {
    auto start = std::chrono::steady_clock::now();
    synth::Dataset d = synth::Dataset::Plan(options, i);
    const std::string file = d.name() + ".h5ad";
    const std::string path = (fs::path(*dir) / file).string();
    // Written beside the target and renamed over it: never a half-written file.
    const std::string partial = (fs::path(*dir) / ("." + file + ".partial")).string();
    Result<Written> written = WriteDataset(d, partial, file, quiet, args.Flag("term-ids"));
    if (!written.ok()) {
      std::error_code ec;
      fs::remove(partial, ec);
      return written.status();
    }
    if (std::rename(partial.c_str(), path.c_str()) != 0) {
      std::string reason = std::strerror(errno);
      std::error_code ec;
      fs::remove(partial, ec);
      return Status::IoError("cannot write '" + path + "': " + reason);
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double density = static_cast<double>(written->nnz) /
                     (static_cast<double>(d.n_cells()) * static_cast<double>(d.n_genes()));
    char extra[64];
    std::snprintf(extra, sizeof extra, " (%.1f%%), ", density * 100);
    char timing[32];
    std::snprintf(timing, sizeof timing, ", %.1f s", seconds);
    std::cout << path << ": " << WithThousands(d.n_cells()) << " cells x "
              << WithThousands(d.n_genes()) << " genes, " << WithThousands(written->nnz)
              << " stored counts" << extra << FormatBytes(written->bytes) << timing << "\n";
    std::cout.flush();
  }
  return Status::Ok();
}

}  // namespace cellcube::cli
