#include "query/scan.h"

#include <algorithm>
#include <cmath>

#include "histogram/record.h"
#include "util/parallel.h"

namespace cellcube::query {
namespace {

// f(lo, hi) over the runs' entries of `gene`. Runs of a few entries each (kShort) are
// found ahead of their scan, which touches two arrays' lines of each run first: the
// cache misses of many short runs then overlap (EntryRead::ForEachShortRun).
template <typename Index, bool kShort, typename A, typename B, typename F>
void ForRuns(const EntryRead& read, int64_t gene, const std::vector<GroupRange>& runs, const A* a,
             const B* b, F&& f) {
  if constexpr (kShort) {
    const auto touch = [a, b](int64_t lo, int64_t hi) {
      __builtin_prefetch(a + lo);
      __builtin_prefetch(b + lo);
      __builtin_prefetch(b + hi - 1);
    };
    read.ForEachShortRun<Index>(gene, runs, touch, f);
  } else {
    read.ForEachRun<Index>(gene, runs, f);
  }
}

// Pass 1: nnz and sum per split.
template <typename Index, typename Nnz, typename Sum, bool kShort>
void ScanSums(const StoreReader&, const EntryRead& read, int64_t gene,
              const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
              Acc* acc) {
  const EntryArrays& a = read.arrays();
  const auto* idx = a.indices.As<Index>();
  const auto* nnz = a.nnz.As<Nnz>();
  const auto* sum = a.sum.As<Sum>();
  ForRuns<Index, kShort>(read, gene, runs, nnz, sum, [&](int64_t lo, int64_t hi) {
    // Consecutive entries mostly share a split (groups are sorted by cell type first):
    // sum in registers and write to the split's accumulator when the split changes,
    // instead of a read-modify-write through memory per entry.
    int32_t current = -1;
    uint64_t n = 0;
    double s1 = 0;
    for (int64_t k = lo; k < hi; ++k) {
      const int32_t split = split_of[static_cast<int64_t>(idx[k]) - base];
      if (split < 0) continue;  // a group outside the selection
      if (split != current) {
        if (current >= 0) {
          acc[current].nnz += n;
          acc[current].sum += s1;
        }
        current = split;
        n = 0;
        s1 = 0;
      }
      n += nnz[k];
      s1 += static_cast<double>(sum[k]);
    }
    if (current >= 0) {
      acc[current].nnz += n;
      acc[current].sum += s1;
    }
  });
}

// Pass 1 for roll-ups into many splits (a DE's donors), where consecutive entries
// rarely share one: added straight into each entry's split, without a branch.
template <typename Index, typename Nnz, typename Sum, bool kShort>
void ScanSumsScattered(const StoreReader&, const EntryRead& read, int64_t gene,
                       const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
                       Acc* acc) {
  const EntryArrays& a = read.arrays();
  const auto* idx = a.indices.As<Index>();
  const auto* nnz = a.nnz.As<Nnz>();
  const auto* sum = a.sum.As<Sum>();
  ForRuns<Index, kShort>(read, gene, runs, nnz, sum, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int32_t split = split_of[static_cast<int64_t>(idx[k]) - base];
      if (split < 0) continue;  // a group outside the selection
      Acc& to = acc[split];
      to.nnz += nnz[k];
      to.sum += static_cast<double>(sum[k]);
    }
  });
}

// Pass 2, with the splits' means known: per entry of group g (n cells, sum, m2),
// m2 + (sum − n·mean)²/n, all terms non-negative (Chan et al.'s pairwise combination in
// its two-pass form); format 1's sumsq is turned into m2 first.
template <typename Index, typename Sum, typename Second, bool kShort>
void ScanSecondMoment(const StoreReader& s, const EntryRead& read, int64_t gene,
                      const std::vector<GroupRange>& runs, int64_t base, const int32_t* split_of,
                      const double* mean, const double* inverse_cells, SecondAcc* acc) {
  const EntryArrays& a = read.arrays();
  const auto* idx = a.indices.As<Index>();
  const auto* sum = a.sum.As<Sum>();
  const auto* second = a.second.As<Second>();
  const bool sumsq = s.second_moment_is_sumsq();
  const auto& n_cells = s.meta().n_cells;
  ForRuns<Index, kShort>(read, gene, runs, sum, second, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const auto group = static_cast<int64_t>(idx[k]);
      const int32_t split = split_of[group - base];
      if (split < 0) continue;  // a group outside the selection
      const auto n = static_cast<double>(n_cells[static_cast<size_t>(group)]);
      const auto s1 = static_cast<double>(sum[k]);
      double m2 = static_cast<double>(second[k]);
      if (sumsq) m2 = std::max(0.0, m2 - s1 * s1 * inverse_cells[group]);
      const double deviation = s1 - n * mean[split];
      acc[split].m2 += m2 + deviation * deviation * inverse_cells[group];
      acc[split].cells += n;
    }
  });
}

// The histograms per split: each selected entry's record added into its split's bins
// (records of unselected groups in between are skipped by their length).
template <typename Index, typename Nnz>
void ScanHist(const EntryRead& read, int64_t gene, const std::vector<GroupRange>& runs,
              int64_t base, const int32_t* split_of, Bins* bins) {
  const EntryArrays& a = read.arrays();
  const auto* idx = a.indices.As<Index>();
  const auto* nnz = a.nnz.As<Nnz>();
  read.ForEachHistRun<Index, Nnz>(
      gene, runs, [&](int64_t lo, int64_t hi, const uint8_t* p, const uint8_t* end) {
        for (int64_t k = lo; k < hi; ++k) {
          const int32_t split = split_of[static_cast<int64_t>(idx[k]) - base];
          const auto avail = static_cast<size_t>(end - p);
          p += split < 0 ? histogram::CheckedRecordLength(p, avail, nnz[k])
                         : histogram::AddCheckedRecord(p, avail, nnz[k], &bins[split]);
        }
        return p;
      });
}

// Per contributing dataset, whether it measured `gene` is bit gene % 64 of its word.
const uint64_t* MeasuredWords(const GeneScan& q, int64_t gene, ScanBuffers* b) {
  const int64_t block = gene / 64;
  if (block != b->measured_block) {
    const MeasuredBits& bits = q.store->measured();
    b->measured_words.resize(q.n_contributing);
    for (size_t j = 0; j < q.n_contributing; ++j)
      b->measured_words[j] = bits.row(q.contributing[j])[block];
    b->measured_block = block;
  }
  return b->measured_words.data();
}

// This gene's active splits (QueryEngine::GeneSplits), their n_cells (the cells of the
// datasets that measured the gene) and zeroed accumulators.
std::pair<const int32_t*, size_t> ActivateSplits(const GeneScan& q, size_t gi, int64_t gene,
                                                 ScanBuffers* b) {
  std::vector<Aggregate>& agg = b->gene;
  const uint64_t* measured = MeasuredWords(q, gene, b);
  const int bit = static_cast<int>(gene % 64);
  if (!q.sparse) {
    for (size_t sp = 0; sp < q.n_splits; ++sp) {
      agg[sp] = Aggregate{};
      agg[sp].n_cells = q.cells[sp];
      b->acc[sp] = Acc{0, 0};
    }
    for (size_t j = 0; j < q.n_contributing; ++j) {
      if ((measured[j] >> bit) & 1) continue;
      for (int64_t k = q.pairs_begin[j]; k < q.pairs_begin[j + 1]; ++k)
        agg[static_cast<size_t>(q.pair_split[k])].n_cells -= q.pair_cells[k];
    }
    return {q.all_splits, q.n_splits};
  }
  b->active.clear();
  const auto stamp = static_cast<uint32_t>(gi + 1);
  for (size_t j = 0; j < q.n_contributing; ++j) {
    if (!((measured[j] >> bit) & 1)) continue;
    for (int64_t k = q.pairs_begin[j]; k < q.pairs_begin[j + 1]; ++k) {
      const auto sp = static_cast<size_t>(q.pair_split[k]);
      if (b->stamp[sp] != stamp) {
        b->stamp[sp] = stamp;
        b->active.push_back(static_cast<int32_t>(sp));
        agg[sp] = Aggregate{};
        b->acc[sp] = Acc{0, 0};
      }
      agg[sp].n_cells += q.pair_cells[k];
    }
  }
  return {b->active.data(), b->active.size()};
}

// Pass 2 and the second moment of the active splits (their sums known).
void AddSecondMoment(const GeneScan& q, int64_t gene, const int32_t* active, size_t n_active,
                     ScanBuffers* b) {
  std::vector<Aggregate>& agg = b->gene;
  for (size_t i = 0; i < n_active; ++i) {
    const auto sp = static_cast<size_t>(active[i]);
    b->mean[sp] = agg[sp].n_cells > 0 ? agg[sp].sum / static_cast<double>(agg[sp].n_cells) : 0;
    b->second[sp] = SecondAcc{0, 0};
  }
  q.second(*q.store, *q.read, gene, *q.runs, q.base, q.split_of, b->mean.data(), q.inverse_cells,
           b->second.data());
  for (size_t i = 0; i < n_active; ++i) {
    const auto sp = static_cast<size_t>(active[i]);
    // The groups without an entry hold zeros: their cells lie mean away from the mean.
    const double zero_cells = static_cast<double>(agg[sp].n_cells) - b->second[sp].cells;
    agg[sp].m2 = b->second[sp].m2 + zero_cells * b->mean[sp] * b->mean[sp];
  }
}

// Genes [begin, end) of `genes` into agg[split * n_genes + gene] (zeroed by the caller),
// or to the visitor.
void ScanGenes(const GeneScan& q, const std::vector<int32_t>& genes, size_t begin, size_t end,
               ScanBuffers* b, Aggregate* agg) {
  const size_t n_splits = q.n_splits, n_genes = q.n_genes;
  std::vector<Aggregate>& gene = b->gene;  // this gene's splits
  gene.assign(n_splits, Aggregate{});
  b->acc.assign(n_splits, Acc{0, 0});
  b->stamp.assign(n_splits, 0);
  b->measured_block = -1;  // the buffers may last have served other datasets
  if (q.hist) b->bins.assign(n_splits, Bins{});
  if (q.second) {
    b->mean.assign(n_splits, 0);
    b->second.assign(n_splits, SecondAcc{0, 0});
  }
  for (size_t gi = begin; gi < end; ++gi) {
    const auto [active, n_active] = ActivateSplits(q, gi, genes[gi], b);
    q.sums(*q.store, *q.read, genes[gi], *q.runs, q.base, q.split_of, b->acc.data());
    for (size_t i = 0; i < n_active; ++i) {
      const auto sp = static_cast<size_t>(active[i]);
      gene[sp].nnz = static_cast<int64_t>(b->acc[sp].nnz);
      gene[sp].sum = b->acc[sp].sum;
    }
    if (q.second) AddSecondMoment(q, genes[gi], active, n_active, b);
    if (q.hist) {
      for (size_t i = 0; i < n_active; ++i) b->bins[static_cast<size_t>(active[i])] = Bins{};
      q.hist(*q.read, genes[gi], *q.runs, q.base, q.split_of, b->bins.data());
    }
    if (q.visit) {
      (*q.visit)(gi, QueryEngine::GeneSplits{gene.data(), q.hist ? b->bins.data() : nullptr, active,
                                             n_active});
      if (q.sparse)  // the next gene's inactive splits must read as zeros
        for (size_t i = 0; i < n_active; ++i) gene[static_cast<size_t>(active[i])] = Aggregate{};
    } else {
      for (size_t i = 0; i < n_active; ++i) {
        const auto sp = static_cast<size_t>(active[i]);
        agg[sp * n_genes + gi] = gene[sp];
        if (q.hist) q.bins_out[sp * n_genes + gi] = b->bins[sp];
      }
    }
  }
}

}  // namespace

SumsFn PickSums(const EntryRead& read, bool scattered, bool short_runs) {
  return VisitEntryTypes(read.arrays(), [=](auto index, auto nnz, auto sum, auto) -> SumsFn {
    using I = decltype(index);
    using N = decltype(nnz);
    using S = decltype(sum);
    if (scattered)
      return short_runs ? &ScanSumsScattered<I, N, S, true> : &ScanSumsScattered<I, N, S, false>;
    return short_runs ? &ScanSums<I, N, S, true> : &ScanSums<I, N, S, false>;
  });
}
HistFn PickHist(const EntryRead& read) {
  return VisitEntryTypes(read.arrays(), [](auto index, auto nnz, auto, auto) {
    return &ScanHist<decltype(index), decltype(nnz)>;
  });
}
SecondFn PickSecond(const EntryRead& read, bool short_runs) {
  return VisitEntryTypes(read.arrays(), [=](auto index, auto, auto sum, auto second) -> SecondFn {
    using I = decltype(index);
    using S = decltype(sum);
    using M = decltype(second);
    return short_runs ? &ScanSecondMoment<I, S, M, true> : &ScanSecondMoment<I, S, M, false>;
  });
}

bool ShortRuns(const std::vector<GroupRange>& runs) {
  // Past 16 groups a run's entries fill lines that the hardware's own prefetching
  // streams well, and a scan in order reads them faster (docs/QUERY.md).
  constexpr int64_t kMinRuns = 8, kMaxGroupsPerRun = 16;
  int64_t spanned = 0;
  for (const GroupRange& run : runs) spanned += run.end - run.begin;
  const auto n = static_cast<int64_t>(runs.size());
  return n >= kMinRuns && spanned <= kMaxGroupsPerRun * n;
}

void ScanAllGenes(const GeneScan& q, const std::vector<int32_t>& genes,
                  int64_t parallel_min_entries, ScanBuffers* own, Aggregate* agg) {
  const ArrayView& indptr = q.read->arrays().indptr;
  std::vector<int64_t> before(genes.size() + 1, 0);  // entries of the genes before each
  for (size_t gi = 0; gi < genes.size(); ++gi)
    before[gi + 1] = before[gi] + indptr.IntAt(genes[gi] + 1) - indptr.IntAt(genes[gi]);
  const auto cores = static_cast<int64_t>(Cores());
  const int64_t workers =
      std::min<int64_t>({cores, static_cast<int64_t>(genes.size()),
                         before.back() / std::max<int64_t>(1, parallel_min_entries / 2)});
  if (parallel_min_entries <= 0 || before.back() < parallel_min_entries || workers < 2) {
    ScanGenes(q, genes, 0, genes.size(), own, agg);
    return;
  }
  std::vector<size_t> cut(static_cast<size_t>(workers) + 1, genes.size());
  cut[0] = 0;
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t target = before.back() * w / workers;
    cut[static_cast<size_t>(w)] = static_cast<size_t>(
        std::lower_bound(before.begin(), before.end(), target) - before.begin());
  }
  // One run of genes per item; each participant sums with buffers of its own.
  std::vector<ScanBuffers> others(static_cast<size_t>(workers) - 1);
  ParallelFor(static_cast<size_t>(workers), static_cast<int>(workers), 1,
              [&](int worker, size_t run) {
                ScanBuffers* b = worker == 0 ? own : &others[static_cast<size_t>(worker) - 1];
                ScanGenes(q, genes, cut[run], cut[run + 1], b, agg);
              });
}

}  // namespace cellcube::query
