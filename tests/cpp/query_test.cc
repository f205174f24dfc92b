// The store reader and the query engine against a brute-force computation over the
// StoreData the store was written from; metric edge cases; output formats; damaged
// stores refused cleanly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "cellcube/h5ad.h"
#include "cellcube/query.h"
#include "cellcube/render.h"
#include "cellcube/store_data.h"
#include "cellcube/store_reader.h"
#include "query/scan.h"
#include "store/store_entries.h"

namespace cellcube {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cellcube-query-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

// A random store: `n_datasets` datasets with their groups consecutive (or interleaved),
// extra columns with missing values, datasets measuring random subsets of the genes.
struct Spec {
  int n_datasets = 3;
  int n_genes = 40;
  int groups_per_dataset = 30;
  std::vector<int> extra_labels = {3, 4};  // labels per extra column (some unused)
  bool interleave = false;
  uint32_t seed = 1;
};

StoreData RandomStore(const Spec& spec) {
  std::mt19937 rng(spec.seed);
  auto uniform = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  StoreData s;
  s.columns = {"dataset", "cell_type"};
  s.labels = {{}, {"T cell", "B, cell", "x=y", "NK"}};
  for (int d = 0; d < spec.n_datasets; ++d) s.labels[0].push_back("ds" + std::to_string(d));
  for (size_t c = 0; c < spec.extra_labels.size(); ++c) {
    s.columns.push_back("col" + std::to_string(c));
    std::vector<std::string> labels;
    for (int l = 0; l < spec.extra_labels[c]; ++l)
      labels.push_back("v" + std::to_string(c) + "_" + std::to_string(l));
    s.labels.push_back(labels);
  }
  s.codes.assign(s.columns.size(), {});
  std::vector<int> order;  // dataset of each group
  for (int d = 0; d < spec.n_datasets; ++d)
    for (int k = 0; k < spec.groups_per_dataset; ++k) order.push_back(d);
  if (spec.interleave) std::shuffle(order.begin(), order.end(), rng);
  for (int d : order) {
    s.codes[0].push_back(d);
    s.codes[1].push_back(uniform(6) == 0 ? -1 : uniform(4));
    for (size_t c = 2; c < s.columns.size(); ++c) {
      int n = static_cast<int>(s.labels[c].size());
      // dataset 1 lacks the last extra column: NA there
      bool lacks = d == 1 && c + 1 == s.columns.size();
      s.codes[c].push_back(lacks || uniform(5) == 0 ? -1 : uniform(std::min(n, 3)));
    }
    s.n_cells.push_back(1 + uniform(20));
  }
  for (int g = 0; g < spec.n_genes; ++g) {
    s.gene_ids.push_back("ENSG" + std::to_string(1000 + g));
    s.gene_symbols.push_back(g % 10 == 3 ? "DUP" : (g % 7 == 0 ? "" : "Sym" + std::to_string(g)));
  }
  std::vector<std::vector<bool>> measured(static_cast<size_t>(spec.n_datasets));
  for (int d = 0; d < spec.n_datasets; ++d) {
    DatasetRecord r;
    r.name = s.labels[0][static_cast<size_t>(d)];
    r.matrix = "X";
    r.transform = "log1p";
    r.cell_type_column = "cell_type";
    for (int g = 0; g < spec.n_genes; ++g) {
      bool m = d == 0 || uniform(4) != 0;
      measured[static_cast<size_t>(d)].push_back(m);
      if (m) r.measured_genes.push_back(g);
    }
    r.n_genes = static_cast<int64_t>(r.measured_genes.size());
    s.datasets.push_back(r);
  }
  s.indptr = {0};
  for (int g = 0; g < spec.n_genes; ++g) {
    for (int64_t grp = 0; grp < s.n_groups(); ++grp) {
      if (!measured[static_cast<size_t>(s.codes[0][grp])][static_cast<size_t>(g)]) continue;
      if (g % 11 == 5 || uniform(3) == 0) continue;  // some genes without any entry
      auto nnz = static_cast<uint32_t>(1 + uniform(static_cast<int>(s.n_cells[grp])));
      float mean = 0.5f + static_cast<float>(uniform(100)) / 25.0f;
      s.group.push_back(static_cast<int32_t>(grp));
      s.nnz.push_back(nnz);
      s.sum.push_back(mean * static_cast<float>(nnz));
      s.m2.push_back(mean * mean * static_cast<float>(nnz) * 0.3f);
    }
    s.indptr.push_back(static_cast<int64_t>(s.group.size()));
  }
  return s;
}

// The answer by brute force: every group, every gene, looking entries up one by one.
std::vector<std::tuple<std::vector<std::string>, std::string, Aggregate>> BruteForce(
    const StoreData& s, const std::vector<int>& genes, const std::vector<int>& by,
    const std::map<int, std::vector<int>>& where,  // column -> allowed codes (-1 = NA)
    const std::vector<int>& datasets) {
  std::map<std::vector<int>, std::vector<Aggregate>> splits;
  for (int64_t grp = 0; grp < s.n_groups(); ++grp) {
    const int d = s.codes[0][grp];
    if (!datasets.empty() && std::find(datasets.begin(), datasets.end(), d) == datasets.end())
      continue;
    bool keep = true;
    for (const auto& [c, allowed] : where)
      keep &= std::find(allowed.begin(), allowed.end(), s.codes[c][grp]) != allowed.end();
    if (!keep) continue;
    std::vector<int> key;
    for (int c : by) {
      int code = s.codes[c][grp];
      key.push_back(code < 0 ? static_cast<int>(s.labels[c].size()) : code);
    }
    auto& aggs = splits[key];
    aggs.resize(genes.size());
    for (size_t gi = 0; gi < genes.size(); ++gi) {
      const int g = genes[gi];
      const auto& m = s.datasets[d].measured_genes;
      if (std::find(m.begin(), m.end(), g) == m.end()) continue;
      aggs[gi].n_cells += s.n_cells[grp];
      for (int64_t k = s.indptr[g]; k < s.indptr[g + 1]; ++k)
        if (s.group[k] == grp) {
          aggs[gi].nnz += s.nnz[k];
          aggs[gi].sum += s.sum[k];
          // Pooled Σv² first (the m2 identity), then the pooled m2: another route than
          // the engine's.
          aggs[gi].m2 += s.m2[k] + s.sum[k] * s.sum[k] / static_cast<double>(s.n_cells[grp]);
        }
    }
  }
  for (auto& [key, aggs] : splits)
    for (Aggregate& a : aggs)
      if (a.n_cells > 0) a.m2 -= a.sum * a.sum / static_cast<double>(a.n_cells);
  std::vector<std::tuple<std::vector<std::string>, std::string, Aggregate>> out;
  for (const auto& [key, aggs] : splits) {
    std::vector<std::string> labels;
    for (size_t i = 0; i < by.size(); ++i)
      labels.push_back(key[i] == static_cast<int>(s.labels[by[i]].size())
                           ? "NA"
                           : s.labels[by[i]][static_cast<size_t>(key[i])]);
    for (size_t gi = 0; gi < genes.size(); ++gi)
      if (aggs[gi].n_cells > 0) out.emplace_back(labels, s.gene_ids[genes[gi]], aggs[gi]);
  }
  return out;
}

void ExpectSame(
    const QueryResult& r,
    const std::vector<std::tuple<std::vector<std::string>, std::string, Aggregate>>& want,
    const std::string& what) {
  ASSERT_EQ(r.rows.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& row = r.rows[i];
    const auto& [labels, gene, agg] = want[i];
    for (size_t c = 0; c < labels.size(); ++c) EXPECT_EQ(r.Label(row, c), labels[c]) << what;
    EXPECT_EQ(r.genes[static_cast<size_t>(row.gene)], gene) << what << " row " << i;
    EXPECT_EQ(row.stats.n_cells, agg.n_cells) << what << " row " << i;
    EXPECT_EQ(row.stats.nnz, agg.nnz) << what << " row " << i;
    EXPECT_NEAR(row.stats.sum, agg.sum, 1e-9 * std::max(1.0, std::fabs(agg.sum))) << what;
    // m2 is stored as float32.
    EXPECT_NEAR(row.stats.m2, agg.m2, 1e-6 * std::max(1.0, std::fabs(agg.m2))) << what;
  }
}

// A store whose datasets' groups are interleaved: format 3's offsets per (gene, dataset)
// need each dataset's groups together, so the writer refuses it and writes nothing.
void ExpectInterleavedRefused(const StoreData& s, const std::string& path) {
  Status w = WriteStore(s, path);
  EXPECT_FALSE(w.ok());
  EXPECT_NE(w.message().find("not in the order of its datasets"), std::string::npos) << w.message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

std::shared_ptr<const QueryEngine> OpenEngine(const StoreData& s, const std::string& path) {
  EXPECT_TRUE(s.Validate().ok()) << s.Validate().message();
  Status w = WriteStore(s, path);
  EXPECT_TRUE(w.ok()) << w.message();
  auto engine = QueryEngine::Open(path);
  EXPECT_TRUE(engine.ok()) << engine.status().message();
  return engine.ok() ? *engine : nullptr;
}

struct Case {
  std::vector<int> genes;
  std::vector<int> by;
  std::map<int, std::vector<int>> where;
  std::vector<int> datasets;
};

Query ToQuery(const StoreData& s, const Case& c) {
  Query q;
  for (int g : c.genes) q.genes.push_back(s.gene_ids[g]);
  for (int b : c.by) q.by.push_back(s.columns[b]);
  for (const auto& [col, codes] : c.where) {
    WhereClause w{s.columns[col], {}};
    for (int code : codes) w.values.push_back(code < 0 ? "NA" : s.labels[col][code]);
    q.population.where.push_back(w);
  }
  for (int d : c.datasets) q.population.datasets.push_back(s.labels[0][d]);
  q.metrics = {"n_cells", "nnz", "sum", "var"};
  return q;
}

std::vector<Case> Cases() {
  return {
      {{0, 1, 2, 5}, {}, {}, {}},
      {{3, 4, 9}, {1}, {}, {}},
      {{0, 7, 13}, {0}, {}, {}},
      {{2, 8}, {1, 2}, {}, {}},
      {{10, 11, 12}, {3, 1}, {{2, {0, -1}}}, {}},
      {{1, 14}, {1}, {{0, {0, 2}}, {3, {1}}}, {}},
      {{6, 5, 16}, {2, 0, 3}, {}, {1, 2}},
      {{0, 15}, {1}, {{1, {-1}}}, {2}},
      {{17}, {1}, {{2, {2}}}, {0}},
      {{18, 19}, {0, 1, 2, 3}, {{1, {0, 1, 2}}}, {}},
  };
}

TEST(Query, MatchesBruteForce) {
  TempDir dir;
  for (bool interleave : {false, true}) {
    Spec spec;
    spec.interleave = interleave;
    spec.seed = interleave ? 7 : 3;
    StoreData s = RandomStore(spec);
    if (interleave) {  // format 3 keeps a dataset's groups together (docs/FORMAT.md)
      ExpectInterleavedRefused(s, dir.File("i.h5ad"));
      continue;
    }
    auto engine = OpenEngine(s, dir.File(interleave ? "i.h5ad" : "c.h5ad"));
    ASSERT_TRUE(engine);
    EXPECT_EQ(engine->store().arrays_mapped(), 5);
    EXPECT_EQ(engine->store().dataset_group_begin().empty(), interleave);
    int k = 0;
    for (const Case& c : Cases()) {
      auto r = engine->Run(ToQuery(s, c));
      ASSERT_TRUE(r.ok()) << r.status().message();
      ExpectSame(*r, BruteForce(s, c.genes, c.by, c.where, c.datasets),
                 "case " + std::to_string(k++) + (interleave ? " interleaved" : ""));
    }
  }
}

// Many datasets of a few groups each: every query of Cases() over all of them reads
// short runs (query::ShortRuns: the scan's loads started some runs ahead, sums and the
// second moment alike), and still matches brute force.
TEST(Query, ShortRunsMatchBruteForce) {
  TempDir dir;
  Spec spec;
  spec.n_datasets = 12;
  spec.groups_per_dataset = 6;
  spec.seed = 9;
  StoreData s = RandomStore(spec);
  auto engine = OpenEngine(s, dir.File("short.h5ad"));
  ASSERT_TRUE(engine);
  std::vector<GroupRun> whole_datasets;
  for (int32_t d = 0; d < spec.n_datasets; ++d)
    whole_datasets.push_back(
        {int64_t{d} * spec.groups_per_dataset, int64_t{d + 1} * spec.groups_per_dataset, d});
  ASSERT_TRUE(query::ShortRuns(whole_datasets)) << "the store's runs must count as short";
  int k = 0;
  for (const Case& c : Cases()) {
    auto r = engine->Run(ToQuery(s, c));
    ASSERT_TRUE(r.ok()) << r.status().message();
    ExpectSame(*r, BruteForce(s, c.genes, c.by, c.where, c.datasets),
               "short-run case " + std::to_string(k++));
  }
}

// The roll-up's plan is kept for the next roll-up of the same selection: the same
// selection with other genes, and the same selection in another store of the same
// shape (other cells per group), alternating on one thread, all match brute force.
TEST(Query, RepeatedSelectionsReuseOnlyTheirOwnPlan) {
  TempDir dir;
  Spec spec;
  std::vector<StoreData> stores = {RandomStore(spec), (spec.seed = 9, RandomStore(spec))};
  ASSERT_EQ(stores[0].n_groups(), stores[1].n_groups());
  ASSERT_NE(stores[0].n_cells, stores[1].n_cells);
  std::vector<std::shared_ptr<const QueryEngine>> engines;
  for (size_t i = 0; i < stores.size(); ++i)
    engines.push_back(OpenEngine(stores[i], dir.File("s" + std::to_string(i) + ".h5ad")));
  ASSERT_TRUE(engines[0] && engines[1]);
  const std::vector<Case> cases = {{{0, 1, 2}, {1}, {}, {}},
                                   {{5, 9, 13, 21}, {1}, {}, {}},
                                   {{5, 9}, {1}, {}, {0, 2}},
                                   {{3, 4}, {1}, {}, {0, 2}}};
  // Each selection twice in a row on a store (the second time with other genes: the
  // plan is reused), then on the other store (the plan is made anew).
  for (int round = 0; round < 2; ++round)
    for (const Case& c : cases)
      for (size_t i = 0; i < stores.size(); ++i)
        for (const std::vector<int>& genes : {c.genes, std::vector<int>{7, 11, 30}}) {
          Case q = c;
          q.genes = genes;
          auto r = engines[i]->Run(ToQuery(stores[i], q));
          ASSERT_TRUE(r.ok()) << r.status().message();
          ExpectSame(*r, BruteForce(stores[i], q.genes, q.by, q.where, q.datasets),
                     "store " + std::to_string(i));
        }
}

// Many splits, each within one dataset (a DE's donors): the roll-up's sparse path. The
// visitor sees the same aggregates as the matrix, which match brute force, and its
// active list holds exactly the splits with cells of a dataset that measured the gene.
TEST(Query, RollUpIntoManySplitsVisitsOnlyActiveOnes) {
  TempDir dir;
  for (int variant : {0, 1, 2}) {  // 3 datasets; 12 of short runs; interleaved groups
    const bool interleave = variant == 2;
    Spec spec;
    spec.interleave = interleave;
    spec.seed = interleave ? 11 : 5;
    if (variant == 1) {
      spec.n_datasets = 12;
      spec.groups_per_dataset = 6;
    }
    StoreData s = RandomStore(spec);
    if (interleave) {
      ExpectInterleavedRefused(s, dir.File("i.h5ad"));
      continue;
    }
    auto engine = OpenEngine(s, dir.File("c" + std::to_string(variant) + ".h5ad"));
    ASSERT_TRUE(engine);
    // Every other group; pairs of them share a split, and split ids skip (some splits
    // never hold a group).
    std::vector<int32_t> groups, split;
    for (int32_t g = 0; g < static_cast<int32_t>(s.n_groups()); g += 2) groups.push_back(g);
    for (size_t i = 0; i < groups.size(); ++i) split.push_back(static_cast<int32_t>(i / 2 * 3));
    const int32_t n_splits = split.back() + 40;
    ASSERT_GE(n_splits, 64);
    std::vector<int32_t> genes;
    for (int32_t g = 0; g < spec.n_genes; ++g) genes.push_back(g);
    auto matrix = engine->RollUp(genes, groups, split, n_splits, true);
    ASSERT_TRUE(matrix.ok()) << matrix.status().message();
    std::vector<std::vector<Aggregate>> seen(genes.size());
    std::vector<std::vector<int32_t>> active(genes.size());
    Status st = engine->RollUpEach(genes, groups, split, n_splits, {true, false},
                                   [&](size_t gi, const QueryEngine::GeneSplits& at) {
                                     seen[gi].assign(at.at, at.at + n_splits);
                                     active[gi].assign(at.active, at.active + at.n_active);
                                   });
    ASSERT_TRUE(st.ok()) << st.message();
    for (size_t gi = 0; gi < genes.size(); ++gi) {
      const int g = genes[gi];
      std::vector<Aggregate> want(static_cast<size_t>(n_splits));
      std::vector<int32_t> want_active;
      for (size_t i = 0; i < groups.size(); ++i) {
        const int64_t grp = groups[i];
        const auto& m = s.datasets[static_cast<size_t>(s.codes[0][grp])].measured_genes;
        if (std::find(m.begin(), m.end(), g) == m.end()) continue;
        Aggregate& a = want[static_cast<size_t>(split[i])];
        a.n_cells += s.n_cells[grp];
        for (int64_t k = s.indptr[g]; k < s.indptr[g + 1]; ++k)
          if (s.group[k] == grp) {
            a.nnz += s.nnz[k];
            a.sum += s.sum[k];
          }
        want_active.push_back(split[i]);
      }
      std::sort(want_active.begin(), want_active.end());
      want_active.erase(std::unique(want_active.begin(), want_active.end()), want_active.end());
      std::vector<int32_t> got_active = active[gi];
      std::sort(got_active.begin(), got_active.end());
      EXPECT_EQ(got_active, want_active) << "gene " << g;
      for (int32_t sp = 0; sp < n_splits; ++sp) {
        const Aggregate& m = (*matrix)[static_cast<size_t>(sp) * genes.size() + gi];
        const Aggregate& v = seen[gi][static_cast<size_t>(sp)];
        const Aggregate& w = want[static_cast<size_t>(sp)];
        EXPECT_EQ(v.n_cells, w.n_cells) << "gene " << g << " split " << sp;
        EXPECT_EQ(v.nnz, w.nnz) << "gene " << g << " split " << sp;
        EXPECT_NEAR(v.sum, w.sum, 1e-9 * std::max(1.0, std::fabs(w.sum)));
        EXPECT_EQ(m.n_cells, v.n_cells);
        EXPECT_EQ(m.nnz, v.nnz);
        EXPECT_EQ(m.sum, v.sum);
        EXPECT_EQ(m.m2, v.m2);
      }
    }
  }
}

TEST(Query, WideKeySpacesAreRankedNotTabled) {
  // 3 columns of 60 labels (most unused): 61^3 keys > the dense table; 4 columns of
  // 70,000 labels: the mixed radix overflows 64 bits and is re-ranked.
  TempDir dir;
  for (int labels : {60, 70000}) {
    Spec spec;
    spec.extra_labels = std::vector<int>(labels == 60 ? 3 : 4, labels);
    spec.n_genes = 12;
    StoreData s = RandomStore(spec);
    auto engine = OpenEngine(s, dir.File("w" + std::to_string(labels) + ".h5ad"));
    ASSERT_TRUE(engine);
    Case c{{0, 1, 4}, {2, 1, 3, 4}, {}, {}};
    if (labels == 60) c.by = {2, 3, 4};
    auto r = engine->Run(ToQuery(s, c));
    ASSERT_TRUE(r.ok()) << r.status().message();
    ExpectSame(*r, BruteForce(s, c.genes, c.by, c.where, c.datasets), "wide");
  }
}

TEST(Query, ConcurrentQueriesAgree) {
  TempDir dir;
  StoreData s = RandomStore(Spec{});
  auto engine = OpenEngine(s, dir.File("t.h5ad"));
  ASSERT_TRUE(engine);
  auto cases = Cases();
  std::vector<std::string> want;
  for (const Case& c : cases) {
    auto r = engine->Run(ToQuery(s, c));
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_FALSE(r->rows.empty());
    want.push_back(FormatCsv(*r));
  }
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        size_t k = static_cast<size_t>(t * 3 + i) % cases.size();
        auto r = engine->Run(ToQuery(s, cases[k]));
        if (!r.ok() || FormatCsv(*r) != want[k]) ++bad[static_cast<size_t>(t)];
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

TEST(Query, QueriesOnEveryCoreGiveTheSameBits) {
  // A threshold of one entry sends every query with two genes or more to the parallel
  // path; each gene must come out with the same bits as on one thread.
  TempDir dir;
  StoreData s = RandomStore(Spec{});
  auto serial = OpenEngine(s, dir.File("p.h5ad"));
  ASSERT_TRUE(serial);
  EngineOptions everywhere;
  everywhere.parallel_min_entries = 1;
  auto parallel = QueryEngine::Create(serial->store_ptr(), everywhere);
  EngineOptions never;
  never.parallel_min_entries = 0;
  auto single = QueryEngine::Create(serial->store_ptr(), never);
  for (const Case& c : Cases()) {
    Query q = ToQuery(s, c);
    q.metrics = {"n_cells", "nnz", "sum", "mean", "var", "std"};
    auto a = single->Run(q);
    auto b = parallel->Run(q);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->rows.size(), b->rows.size());
    for (size_t i = 0; i < a->rows.size(); ++i) {
      EXPECT_EQ(a->rows[i].stats.nnz, b->rows[i].stats.nnz);
      EXPECT_EQ(a->rows[i].stats.n_cells, b->rows[i].stats.n_cells);
      EXPECT_EQ(std::memcmp(&a->rows[i].stats.sum, &b->rows[i].stats.sum, 8), 0);
      EXPECT_EQ(std::memcmp(&a->rows[i].stats.m2, &b->rows[i].stats.m2, 8), 0);
    }
    EXPECT_EQ(FormatCsv(*a), FormatCsv(*b));
  }
}

TEST(Query, GenesByIdOrSymbolCaseInsensitive) {
  TempDir dir;
  StoreData s = RandomStore(Spec{});
  auto engine = OpenEngine(s, dir.File("g.h5ad"));
  ASSERT_TRUE(engine);
  auto g = engine->ResolveGenes({"ensg1001", "SYM2", "dup", "ENSG1001", "sym1"});
  ASSERT_TRUE(g.ok()) << g.status().message();
  // ENSG1001, Sym2 -> 2, DUP -> every gene g % 10 == 3, dedup of ENSG1001 and sym1.
  std::vector<int32_t> want = {1, 2};
  for (int i = 0; i < 40; ++i)
    if (i % 10 == 3) want.push_back(i);
  EXPECT_EQ(*g, want);
  auto bad = engine->ResolveGenes({"ENSG1O01"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bad.status().message().find("ENSG1001"), std::string::npos) << bad.status().message();
}

TEST(Query, ErrorsAreOneLineWithSuggestions) {
  TempDir dir;
  StoreData s = RandomStore(Spec{});
  auto engine = OpenEngine(s, dir.File("e.h5ad"));
  ASSERT_TRUE(engine);
  auto message = [&](Query q) {
    auto r = engine->Run(q);
    EXPECT_FALSE(r.ok());
    std::string m = r.ok() ? "" : r.status().message();
    EXPECT_EQ(m.find('\n'), std::string::npos);
    return m;
  };
  Query q;
  q.genes = {"ENSG1000"};
  EXPECT_NE(message([&] {
              auto x = q;
              x.by = {"cell_typ"};
              return x;
            }())
                .find("'cell_type'"),
            std::string::npos);
  EXPECT_NE(message([&] {
              auto x = q;
              x.population.where = {{"col0", {"v0_9"}}};
              return x;
            }())
                .find("v0_"),
            std::string::npos);
  EXPECT_NE(message([&] {
              auto x = q;
              x.population.datasets = {"ds9"};
              return x;
            }())
                .find("'ds"),
            std::string::npos);
  EXPECT_NE(message([&] {
              auto x = q;
              x.metrics = {"stdev"};
              return x;
            }())
                .find("'std'"),
            std::string::npos);
  EXPECT_FALSE(message([&] {
                 auto x = q;
                 x.genes = {};
                 return x;
               }())
                   .empty());
  EXPECT_FALSE(message([&] {
                 auto x = q;
                 x.by = {"col0", "col0"};
                 return x;
               }())
                   .empty());
}

TEST(Metrics, DerivedPerSpec) {
  Aggregate a{4, 2, 6.0, 20.0 - 36.0 / 4};  // m2 = Σv² − sum²/n
  EXPECT_EQ(MetricValue(Metric::kNCells, a), 4);
  EXPECT_EQ(MetricValue(Metric::kNnz, a), 2);
  EXPECT_EQ(MetricValue(Metric::kFrac, a), 0.5);
  EXPECT_EQ(MetricValue(Metric::kSum, a), 6.0);
  EXPECT_EQ(MetricValue(Metric::kMean, a), 1.5);
  EXPECT_EQ(MetricValue(Metric::kMeanExpr, a), 3.0);
  EXPECT_DOUBLE_EQ(MetricValue(Metric::kVar, a), (20.0 - 36.0 / 4) / 3);
  EXPECT_DOUBLE_EQ(MetricValue(Metric::kStd, a), std::sqrt((20.0 - 36.0 / 4) / 3));
  EXPECT_TRUE(std::isnan(MetricValue(Metric::kMeanExpr, Aggregate{4, 0, 0, 0})));
  EXPECT_EQ(MetricValue(Metric::kVar, Aggregate{4, 0, 0, 0}), 0);
  EXPECT_TRUE(std::isnan(MetricValue(Metric::kVar, Aggregate{1, 1, 2, 4})));
  EXPECT_TRUE(std::isnan(MetricValue(Metric::kStd, Aggregate{1, 1, 2, 4})));
  // var is m2 / (n − 1), with no cancellation left to clamp.
  EXPECT_DOUBLE_EQ(MetricValue(Metric::kVar, Aggregate{3, 3, 15.0, 5e-7}), 2.5e-7);
  auto m = ParseMetrics({});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, DefaultMetrics());
  EXPECT_FALSE(ParseMetrics({"n_cells", "n_cells"}).ok());
  EXPECT_FALSE(ParseMetrics({"Mean"}).ok());
}

TEST(Format, CsvAndJson) {
  QueryResult r;
  r.by = {"cell_type"};
  r.metrics = {Metric::kNCells, Metric::kMeanExpr, Metric::kFrac};
  r.genes = {"G\"1"};
  r.symbols = {""};
  r.n_splits = 2;
  r.split_labels = {"a,b", "x=y\n"};
  r.rows = {{0, 0, Aggregate{3, 0, 0, 0}}, {1, 0, Aggregate{10, 1, 0.5, 0.25}}};
  EXPECT_EQ(FormatCsv(r),
            "cell_type,gene,n_cells,mean_expr,frac\n"
            "\"a,b\",\"G\"\"1\",3,,0\n"
            "\"x=y\n\",\"G\"\"1\",10,0.5,0.1\n");
  EXPECT_EQ(FormatJson(r),
            "[\n{\"cell_type\":\"a,b\",\"gene\":\"G\\\"1\",\"n_cells\":3,\"mean_expr\":null,"
            "\"frac\":0}"
            ",\n{\"cell_type\":\"x=y\\u000a\",\"gene\":\"G\\\"1\",\"n_cells\":10,\"mean_expr\":0.5,"
            "\"frac\":0.1}\n]\n");
  r.rows.clear();
  EXPECT_EQ(FormatJson(r), "[]\n");
  EXPECT_EQ(FormatCsv(r), "cell_type,gene,n_cells,mean_expr,frac\n");
}

// ---- damaged stores ----

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

uint64_t OffsetOf(const std::string& path, const std::string& dataset) {
  auto f = h5ad::File::Open(path);
  EXPECT_TRUE(f.ok());
  auto e = (*f)->Locate(dataset);
  EXPECT_TRUE(e.ok() && e->in_place);
  return e->offset;
}

class DamagedStore : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = RandomStore(Spec{});
    good_ = dir_.File("good.h5ad");
    ASSERT_TRUE(WriteStore(s_, good_).ok());
    bytes_ = ReadAll(good_);
  }
  // Writes `bytes` to a new file and expects a Corrupt error that mentions `mention`:
  // from Open (metadata, arrays, indptr), or else (damaged entries, docs/SCALING.md) from a
  // query that reads every gene and from CheckAllGenes.
  void ExpectRefused(const std::string& bytes, const std::string& mention) {
    std::string path = dir_.File("bad" + std::to_string(n_++) + ".h5ad");
    WriteAll(path, bytes);
    auto r = StoreReader::Open(path);
    if (r.ok()) {
      Query all;
      all.genes = s_.gene_ids;
      all.metrics = {"n_cells", "sum", "var"};
      auto answer = QueryEngine::Create(*r)->Run(all);
      ASSERT_FALSE(answer.ok()) << "answered from a damaged store (" << mention << ")";
      ExpectCorrupt(answer.status(), mention);
      ExpectCorrupt((*r)->CheckAllGenes(), mention);
      return;
    }
    ExpectCorrupt(r.status(), mention);
  }
  void ExpectCorrupt(const Status& s, const std::string& mention) {
    EXPECT_EQ(s.code(), StatusCode::kCorrupt) << s.message();
    EXPECT_NE(s.message().find(mention), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  }
  template <typename T>
  void Poke(std::string* bytes, uint64_t offset, T value) {
    std::memcpy(bytes->data() + offset, &value, sizeof value);
  }
  TempDir dir_;
  StoreData s_;
  std::string good_;
  std::string bytes_;
  int n_ = 0;
};

TEST_F(DamagedStore, GoodStoreOpens) {
  auto r = StoreReader::Open(good_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->n_entries(), s_.n_entries());
}

TEST_F(DamagedStore, Truncated) {
  for (size_t keep : {bytes_.size() / 2, bytes_.size() - 8, size_t{4096}, size_t{100}}) {
    std::string path = dir_.File("trunc" + std::to_string(keep) + ".h5ad");
    WriteAll(path, bytes_.substr(0, keep));
    auto r = StoreReader::Open(path);
    ASSERT_FALSE(r.ok()) << keep;
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
}

TEST_F(DamagedStore, EntryGroupOutOfRangeOrUnordered) {
  const uint64_t at = OffsetOf(good_, "layers/nnz/indices");
  std::string b = bytes_;
  Poke<int32_t>(&b, at + 4, 1 << 30);
  ExpectRefused(b, "out of range");
  b = bytes_;
  Poke<int32_t>(&b, at + 4, -5);
  ExpectRefused(b, "out of range");
  // A repeat of the previous entry's group, within one gene.
  int64_t k = -1;
  for (int64_t g = 0; g < s_.n_genes() && k < 0; ++g)
    if (s_.indptr[g + 1] - s_.indptr[g] >= 2) k = s_.indptr[g] + 1;
  ASSERT_GE(k, 1);
  b = bytes_;
  Poke<int32_t>(&b, at + 4 * static_cast<uint64_t>(k), s_.group[static_cast<size_t>(k - 1)]);
  ExpectRefused(b, "ascend");
}

TEST_F(DamagedStore, IndptrBroken) {
  const uint64_t at = OffsetOf(good_, "layers/nnz/indptr");
  std::string b = bytes_;
  Poke<int32_t>(&b, at + 4 * 3, static_cast<int32_t>(s_.n_entries() + 100));
  ExpectRefused(b, "indptr");
  b = bytes_;
  Poke<int32_t>(&b, at, 1);
  ExpectRefused(b, "indptr");
  b = bytes_;
  Poke<int32_t>(&b, at + 4 * static_cast<uint64_t>(s_.n_genes()), 3);
  ExpectRefused(b, "indptr");
}

TEST_F(DamagedStore, StatisticsImpossible) {
  std::string b = bytes_;
  Poke<uint32_t>(&b, OffsetOf(good_, "layers/nnz/data") + 8, 0xFFFFFF00u);
  ExpectRefused(b, "nnz");
  b = bytes_;
  Poke<double>(&b, OffsetOf(good_, "layers/sum/data") + 16, std::nan(""));
  ExpectRefused(b, "finite");
  b = bytes_;
  Poke<float>(&b, OffsetOf(good_, "layers/m2/data"), -1.0f);
  ExpectRefused(b, "m2");
}

TEST_F(DamagedStore, OffsetsOutsideTheFile) {
  // Rewrites the address of layers/nnz/data in the dataset's layout message so that it
  // points past the end of the file (or just before it, so the array would run over).
  const uint64_t at = OffsetOf(good_, "layers/nnz/data");
  std::string needle(8, '\0');
  std::memcpy(needle.data(), &at, 8);
  // The arrays are page-aligned, so the address may also stand elsewhere in the file:
  // the layout message's copy is the one whose change moves the array.
  size_t where = std::string::npos;
  for (size_t pos = bytes_.find(needle); pos != std::string::npos && where == std::string::npos;
       pos = bytes_.find(needle, pos + 1)) {
    std::string b = bytes_;
    Poke<uint64_t>(&b, pos, at + 8);
    std::string path = dir_.File("probe" + std::to_string(n_++) + ".h5ad");
    WriteAll(path, b);
    auto f = h5ad::File::Open(path);
    if (!f.ok()) continue;
    auto e = (*f)->Locate("layers/nnz/data");
    if (e.ok() && e->offset == at + 8) where = pos;
  }
  ASSERT_NE(where, std::string::npos);
  for (uint64_t to :
       {uint64_t{bytes_.size()} + 4096, uint64_t{bytes_.size()} - 4, uint64_t{1} << 60}) {
    std::string b = bytes_;
    Poke<uint64_t>(&b, where, to);
    std::string path = dir_.File("addr" + std::to_string(n_++) + ".h5ad");
    WriteAll(path, b);
    auto r = StoreReader::Open(path);
    ASSERT_FALSE(r.ok()) << "opened a store whose array lies at " << to;
    EXPECT_NE(r.status().message().find("lies outside the file"), std::string::npos)
        << r.status().message();
  }
  // Pointing inside the file, at other bytes: refused by the checks on the values.
  std::string b = bytes_;
  Poke<uint64_t>(&b, where, 0);
  ExpectRefused(b, "nnz");
}

TEST_F(DamagedStore, NotAStore) {
  std::string path = dir_.File("empty.h5ad");
  WriteAll(path, "");
  EXPECT_FALSE(StoreReader::Open(path).ok());
  auto missing = StoreReader::Open(dir_.File("missing.h5ad"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// Short runs (a few groups in each of many datasets, as a DE of one cell type across an
// atlas reads): ForEachShortRun, which finds each run from entry_offsets and hands it out
// some runs after touching it, gives the same ranges in the same order as ForEachRun,
// for genes checked whole and for genes checked dataset by dataset, and each range holds
// exactly the run's entries.
TEST(Query, ShortRunsGiveTheSameRangesAsRunsInOrder) {
  TempDir dir;
  Spec spec;
  spec.n_datasets = 40;
  spec.n_genes = 60;
  spec.groups_per_dataset = 5;
  spec.seed = 17;
  const StoreData s = RandomStore(spec);
  ASSERT_TRUE(WriteStore(s, dir.File("short.h5ad")).ok());
  auto opened = StoreReader::Open(dir.File("short.h5ad"));
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  const StoreReader& reader = **opened;
  const StoreEntries& entries = EntriesOf(reader);
  ASSERT_TRUE(entries.has_entry_offsets());
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  // Runs of 1-2 groups in every dataset, or in a few (checked dataset by dataset).
  auto runs_of = [&](const std::vector<int32_t>& datasets) {
    std::vector<GroupRun> runs;
    for (int32_t d : datasets) {
      const int64_t first = static_cast<int64_t>(d) * spec.groups_per_dataset + 1 + d % 3;
      runs.push_back({first, first + 1 + d % 2, d});
    }
    return runs;
  };
  std::vector<int32_t> all, few = {3, 17, 29};
  for (int32_t d = 0; d < spec.n_datasets; ++d) all.push_back(d);
  for (const auto& datasets : {few, all}) {
    const std::vector<GroupRun> runs = runs_of(datasets);
    std::vector<int32_t> genes;
    for (int32_t g = 0; g < (datasets.size() < 4 ? 3 : spec.n_genes); ++g) genes.push_back(g);
    auto read = entries.PrepareRead(genes, datasets);
    ASSERT_TRUE(read.ok()) << read.status().message();
    ASSERT_FALSE(read->copy());
    int64_t nonempty = 0;
    for (int32_t g : genes) {
      EXPECT_EQ(entries.GeneChecked(g), datasets.size() > 4) << "gene " << g;
      Ranges plain, ahead;
      read->ForEachRun<int32_t>(g, runs, [&](int64_t lo, int64_t hi) {
        if (lo < hi) plain.emplace_back(lo, hi);
      });
      int64_t touched = 0;
      read->ForEachShortRun<int32_t>(
          g, runs, [&](int64_t, int64_t) { ++touched; },
          [&](int64_t lo, int64_t hi) { ahead.emplace_back(lo, hi); });
      EXPECT_EQ(ahead, plain) << "gene " << g;
      EXPECT_EQ(touched, static_cast<int64_t>(ahead.size())) << "gene " << g;
      // Brute force: the entries of each run's groups, from the store's own arrays.
      Ranges want;
      for (const GroupRun& run : runs) {
        int64_t lo = -1, hi = -1;
        for (int64_t k = s.indptr[g]; k < s.indptr[g + 1]; ++k)
          if (s.group[static_cast<size_t>(k)] >= run.begin &&
              s.group[static_cast<size_t>(k)] < run.end) {
            if (lo < 0) lo = k;
            hi = k + 1;
          }
        if (lo >= 0) want.emplace_back(lo, hi);
      }
      EXPECT_EQ(ahead, want) << "gene " << g;
      nonempty += static_cast<int64_t>(want.size());
    }
    EXPECT_GT(nonempty, static_cast<int64_t>(genes.size())) << "runs with entries to compare";
  }
}

// Reads of one dataset among many (docs/SCALING.md): only that dataset's entries in each gene
// are checked; the first read of many genes copies them out of the file (EntryCopy),
// later ones read the mapping. Every path answers as brute force does.
class OneDatasetReads : public ::testing::Test {
 protected:
  static constexpr int kDataset = 4;
  void SetUp() override {
    Spec spec;
    spec.n_datasets = 10;
    spec.n_genes = 1500;  // about 1,100 measured by each dataset: enough to copy
    spec.groups_per_dataset = 6;
    spec.seed = 21;
    s_ = RandomStore(spec);
    good_ = dir_.File("good.h5ad");
    ASSERT_TRUE(s_.Validate().ok());
    ASSERT_TRUE(WriteStore(s_, good_).ok());
    for (int g = 0; g < spec.n_genes; ++g) all_genes_.push_back(g);
  }
  std::shared_ptr<const StoreReader> Open(const std::string& path) {
    auto r = StoreReader::Open(path);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : nullptr;
  }
  // The query of `genes` by cell type within `dataset`.
  Case Within(int dataset, std::vector<int> genes) const { return {genes, {1}, {}, {dataset}}; }
  // The first entry k of `dataset` in a gene where another dataset's entry comes before,
  // one whose nnz would fit k's group (so that moving it there breaks only the order).
  int64_t EntryOf(int dataset, int* gene) const {
    auto dataset_of = [&](int64_t k) { return s_.codes[0][static_cast<size_t>(s_.group[k])]; };
    for (int g = 0; g < s_.n_genes(); ++g)
      for (int64_t k = s_.indptr[g] + 1; k < s_.indptr[g + 1]; ++k)
        if (dataset_of(k) == dataset && dataset_of(k - 1) != dataset &&
            s_.nnz[static_cast<size_t>(k - 1)] <= s_.n_cells[static_cast<size_t>(s_.group[k])]) {
          *gene = g;
          return k;
        }
    return -1;
  }
  TempDir dir_;
  StoreData s_;
  std::string good_;
  std::vector<int> all_genes_;
};

TEST_F(OneDatasetReads, CopiedOnceThenReusedAndAllMatchBruteForce) {
  auto store = Open(good_);
  ASSERT_TRUE(store);
  std::vector<int32_t> genes(all_genes_.begin(), all_genes_.end());
  const StoreEntries& entries = EntriesOf(*store);
  auto first = entries.PrepareRead(genes, {kDataset});
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(first->copy()) << "a read of 1,500 genes in one dataset reads a copy";
  const EntryArrays& copied = first->arrays();
  EXPECT_TRUE(copied.all_checked);
  // The copy holds exactly the dataset's entries of each gene, as the mapping has them.
  const EntryArrays mapping{entries.indptr(), entries.indices(),       entries.nnz(),
                            entries.sum(),    entries.second_moment(), false};
  for (int32_t g : genes) {
    const auto [begin, end] = entries.DatasetEntries(g, kDataset);
    const int64_t at = copied.indptr.IntAt(g);
    ASSERT_EQ(copied.indptr.IntAt(g + 1) - at, store->Measured(kDataset, g) ? end - begin : 0);
    for (int64_t k = 0; k < end - begin && store->Measured(kDataset, g); ++k) {
      EXPECT_EQ(copied.indices.As<int32_t>()[at + k], mapping.indices.As<int32_t>()[begin + k]);
      EXPECT_EQ(copied.nnz.As<uint16_t>()[at + k], mapping.nnz.As<uint16_t>()[begin + k]);
      EXPECT_EQ(copied.sum.As<double>()[at + k], mapping.sum.As<double>()[begin + k]);
      EXPECT_EQ(copied.second.As<float>()[at + k], mapping.second.As<float>()[begin + k]);
    }
    EXPECT_FALSE(entries.GeneChecked(g)) << "only the dataset's entries were checked";
  }
  // The next read of the dataset, of other genes, reuses it; a read of a few genes, or
  // of another dataset's few genes, reads the mapping.
  std::vector<int32_t> half(genes.begin(), genes.begin() + 1200);
  auto again = entries.PrepareRead(half, {kDataset});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->copy(), first->copy());
  auto few = entries.PrepareRead({1, 2, 3}, {kDataset});
  ASSERT_TRUE(few.ok());
  EXPECT_FALSE(few->copy());

  // Through the engine: copied, then the copy again, then a few genes in the mapping
  // (on a fresh reader, so their entries are checked in place).
  auto engine = QueryEngine::Create(Open(good_));
  const Case all = Within(kDataset, all_genes_), some = Within(kDataset, {3, 7, 200, 1001});
  for (const char* what : {"copied", "copy reused"}) {
    auto r = engine->Run(ToQuery(s_, all));
    ASSERT_TRUE(r.ok()) << r.status().message();
    ExpectSame(*r, BruteForce(s_, all.genes, all.by, all.where, all.datasets), what);
  }
  auto r = QueryEngine::Create(Open(good_))->Run(ToQuery(s_, some));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ExpectSame(*r, BruteForce(s_, some.genes, some.by, some.where, some.datasets), "in place");
}

TEST_F(OneDatasetReads, DamageIsFoundByTheReadsOfItsDataset) {
  int gene = -1;
  const int64_t k = EntryOf(kDataset, &gene);
  ASSERT_GE(k, 1);
  const std::string bytes = ReadAll(good_);
  struct Damage {
    const char* array;
    std::function<void(std::string*, uint64_t)> poke;
    const char* mention;
  };
  const std::vector<Damage> damages = {
      {"layers/sum/data",
       [&](std::string* b, uint64_t at) {
         const double nan = std::nan("");
         std::memcpy(b->data() + at + 8 * static_cast<uint64_t>(k), &nan, 8);
       },
       "sum is not finite"},
      // The entry before the dataset's first takes a group of the dataset: its entries
      // are no longer all where the search finds them.
      {"layers/nnz/indices",
       [&](std::string* b, uint64_t at) {
         const int32_t group = s_.group[static_cast<size_t>(k)];
         std::memcpy(b->data() + at + 4 * static_cast<uint64_t>(k - 1), &group, 4);
       },
       "ascend"},
  };
  int n = 0;
  for (const Damage& damage : damages) {
    std::string b = bytes;
    damage.poke(&b, OffsetOf(good_, damage.array));
    const std::string bad = dir_.File("bad" + std::to_string(n++) + ".h5ad");
    WriteAll(bad, b);
    for (const Case& c : {Within(kDataset, all_genes_), Within(kDataset, {gene})}) {
      auto r = QueryEngine::Create(Open(bad))->Run(ToQuery(s_, c));
      ASSERT_FALSE(r.ok()) << "answered from a damaged entry (" << damage.mention << ")";
      EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
      EXPECT_NE(r.status().message().find(damage.mention), std::string::npos)
          << r.status().message();
      EXPECT_NE(r.status().message().find("of gene '" + s_.gene_ids[gene] + "'"), std::string::npos)
          << r.status().message();
    }
    // Another dataset's reads do not touch the entry (a group-index change moves an
    // entry from the dataset before, whose reads then rightly miss it).
    const int other = damage.array == std::string("layers/sum/data") ? kDataset - 1 : kDataset + 1;
    for (const Case& c : {Within(other, all_genes_), Within(other, {gene})}) {
      auto r = QueryEngine::Create(Open(bad))->Run(ToQuery(s_, c));
      ASSERT_TRUE(r.ok()) << r.status().message();
      ExpectSame(*r, BruteForce(s_, c.genes, c.by, c.where, c.datasets), "other dataset");
    }
    // A read of every other gene of the dataset: the copy meets the damage, and the
    // read, checked in place instead, answers.
    std::vector<int> others;
    for (int g : all_genes_)
      if (g != gene) others.push_back(g);
    const Case rest = Within(kDataset, others);
    auto answer = QueryEngine::Create(Open(bad))->Run(ToQuery(s_, rest));
    ASSERT_TRUE(answer.ok()) << answer.status().message();
    ExpectSame(*answer, BruteForce(s_, rest.genes, rest.by, rest.where, rest.datasets),
               "the other genes");
    auto whole = Open(bad);
    EXPECT_EQ(whole->CheckAllGenes().code(), StatusCode::kCorrupt);
  }
}

}  // namespace
}  // namespace cellcube
