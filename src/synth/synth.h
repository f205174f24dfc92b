// `cellcube synth`: realistic synthetic single-cell RNA-seq datasets, as pure
// computation (no I/O): each dataset's metadata (obs/var) and its count matrix,
// generated in blocks of rows so that memory stays bounded however many cells.
// The generative model is described in docs/SYNTH.md.
//
// Deterministic: a seed gives the same datasets whatever the block size or the
// number of threads (every cell draws from its own random stream).
// Thread safety: a Dataset is immutable after Plan; Generate may run concurrently.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::synth {

struct Options {
  int64_t cells = 20000;  // per dataset
  int64_t genes = 2000;   // per dataset
  uint64_t seed = 1;
};

inline constexpr int64_t kMinGenes = 300;  // room for every known marker gene
inline constexpr int64_t kMaxGenes = 100000;
inline constexpr int64_t kMaxCells = 2147483647;  // rows cellcube's reader accepts

// A categorical column: categories and one code per row (-1 = missing).
struct Categorical {
  std::string name;
  std::vector<std::string> categories;
  std::vector<int32_t> codes;
  bool ordered = false;
};

// Consecutive rows of the count matrix in CSR form, with per-row and per-gene sums.
struct CsrRows {
  int64_t row_begin = 0;
  int64_t n_rows = 0;
  std::vector<int64_t> row_nnz;   // stored values per row
  std::vector<double> row_total;  // sum of counts per row
  std::vector<int32_t> indices;   // gene of each value, increasing within a row
  std::vector<float> data;        // counts: integers >= 1
  std::vector<int64_t> gene_nnz;  // per gene: rows of this block expressing it
  std::vector<double> gene_sum;   // per gene: sum of its counts in this block
};

class Dataset {
 public:
  // Plans dataset `index` (0-based) of a run. Every dataset of a run draws its genes
  // from one gene universe per (seed, genes), so datasets share gene ids and symbols.
  static Dataset Plan(const Options& options, int index);

  Dataset(Dataset&&) noexcept;
  Dataset& operator=(Dataset&&) noexcept;
  ~Dataset();

  const std::string& name() const;   // "synth_01"
  const std::string& title() const;  // one descriptive line
  int64_t n_cells() const;
  int64_t n_genes() const;
  double target_density() const;  // expected fraction of non-zero counts

  // obs columns: cell_type, tissue, disease, cancer_stage (ordered; missing for donors
  // without cancer), sex, donor.
  const std::vector<Categorical>& obs() const;
  // The obs index: 10x-style barcodes "ACGT...-N" (N = the sample), unique, made on
  // demand (they are the largest part of the metadata).
  std::vector<std::string> Barcodes() const;
  // var: gene ids ("ENSG..."), symbols (real ones for known genes), biotypes.
  const std::vector<std::string>& gene_ids() const;
  const std::vector<std::string>& gene_symbols() const;
  const std::vector<std::string>& gene_biotypes() const;

  // Rows [begin, end) of the count matrix (cells x genes).
  void Generate(int64_t begin, int64_t end, CsrRows* out) const;

  struct Model;

 private:
  Dataset();
  std::unique_ptr<Model> m_;
};

// Generates a dataset's rows in consecutive blocks on worker threads, ahead of the
// consumer, and hands them out in row order.
class RowStream {
 public:
  RowStream(const Dataset& dataset, int64_t rows_per_block, int threads);
  ~RowStream();
  RowStream(const RowStream&) = delete;
  RowStream& operator=(const RowStream&) = delete;

  // The next block; false after the last row.
  Result<bool> Next(CsrRows* out);

 private:
  void Work();

  const Dataset& dataset_;
  int64_t rows_per_block_;
  int64_t n_blocks_;
  int64_t window_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_to_start_ = 0;
  int64_t next_to_hand_out_ = 0;
  bool stop_ = false;
  std::string error_;
  std::map<int64_t, CsrRows> done_;
  std::vector<std::thread> workers_;
};

}  // namespace cellcube::synth
