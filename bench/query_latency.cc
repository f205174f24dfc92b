// cellcube-bench-query: in-process latency of queries against a store (issue 4).
//
//   cellcube-bench-query STORE [--iterations N] [--no-csv] [--parallel-min-entries N]
//                        [query options as `cellcube query`]
//
// Without --genes it runs the two standard queries:
//   dotplot  20 genes (the 20 with the most stored entries among those the first
//            dataset measured), by cell_type, one --where (the most common value of
//            the first of disease/sex/tissue taking two or more values in that
//            dataset), that one dataset;
//   atlas    the same 20 genes over every dataset, by tissue x cell_type (by
//            dataset x cell_type when there is no tissue column).
// --metrics M,... applies to them too (a median dot plot: --metrics n_cells,frac,median),
// and so does --rollup COL (an ontology's tree: --rollup cell_type).
// Prints one JSON object: per query its parameters (so other benchmarks can ask the
// same), the open time, and the latency of QueryEngine::Run (p50, p99, mean, min, in
// microseconds) and of Run + FormatCsv.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cellcube/de.h"
#include "cellcube/query.h"
#include "cellcube/render.h"
#include "cli/args.h"

namespace cellcube {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Named {
  std::string name;
  Query query;
};

// The standard queries, chosen from the store's content.
std::vector<Named> StandardQueries(const QueryEngine& engine) {
  const StoreReader& s = engine.store();
  const StoreData& m = s.meta();
  const int32_t d0 = 0;
  std::vector<std::pair<int64_t, int32_t>> by_entries;
  for (int64_t g = 0; g < s.n_genes(); ++g)
    if (s.Measured(d0, g)) by_entries.emplace_back(s.GeneEntries(g), static_cast<int32_t>(g));
  std::stable_sort(by_entries.begin(), by_entries.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> genes;
  for (size_t i = 0; i < by_entries.size() && genes.size() < 20; ++i)
    genes.emplace_back(s.gene_ids()[static_cast<size_t>(by_entries[i].second)]);

  WhereClause where;
  for (const char* name : {"disease", "sex", "tissue"}) {
    auto c = engine.ColumnIndex(name);
    if (!c.ok()) continue;
    std::vector<int64_t> cells(m.labels[static_cast<size_t>(*c)].size(), 0);
    int present = 0;
    for (int64_t g = 0; g < s.n_groups(); ++g) {
      int32_t code = m.codes[static_cast<size_t>(*c)][static_cast<size_t>(g)];
      if (m.codes[0][static_cast<size_t>(g)] != d0 || code < 0) continue;
      present += cells[static_cast<size_t>(code)] == 0;
      cells[static_cast<size_t>(code)] += m.n_cells[static_cast<size_t>(g)];
    }
    if (present < 2) continue;
    auto best = std::max_element(cells.begin(), cells.end()) - cells.begin();
    where = {name, {m.labels[static_cast<size_t>(*c)][static_cast<size_t>(best)]}};
    break;
  }
  Named dotplot{"dotplot", {}};
  dotplot.query.genes = genes;
  dotplot.query.by = {"cell_type"};
  if (!where.column.empty()) dotplot.query.population.where = {where};
  dotplot.query.population.datasets = {m.labels[0][static_cast<size_t>(d0)]};
  Named atlas{"atlas", {}};
  atlas.query.genes = genes;
  atlas.query.by = {engine.ColumnIndex("tissue").ok() ? "tissue" : "dataset", "cell_type"};
  return {dotplot, atlas};
}

json QueryJson(const Query& q) {
  json where = json::object();
  for (const auto& w : q.population.where) where[w.column] = w.values;
  return {{"genes", q.genes},
          {"by", q.by},
          {"where", where},
          {"datasets", q.population.datasets},
          {"rollup", q.population.rollup},
          {"metrics",
           q.metrics.empty() ? std::vector<std::string>{"n_cells", "frac", "mean"} : q.metrics}};
}

json Stats(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  double total = 0;
  for (double v : us) total += v;
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  return {{"p50_us", at(0.5)},
          {"p99_us", at(0.99)},
          {"mean_us", total / us.size()},
          {"min_us", us.front()}};
}

// --de-compare COL --de-group1 V [--de-group2 V|rest] [--de-test T] [--where/--datasets]:
// the latency of one differential expression over every gene (RunDe, in process), the
// first run (which checks the entries of every gene read) apart.
Status BenchDe(const QueryEngine& engine, const cli::Args& args, int64_t iterations,
               double open_s) {
  DeOptions o;
  o.compare = args.GetOr("de-compare", "");
  o.group1 = args.GetAll("de-group1");
  o.group2 = args.GetAll("de-group2");
  o.testing.test = args.GetOr("de-test", "auto");
  CC_ASSIGN_OR_RETURN(o.population, cli::PopulationOptions(args));
  auto a = Clock::now();
  CC_ASSIGN_OR_RETURN(DeResult first, RunDe(engine, o));
  const double first_s = std::chrono::duration<double>(Clock::now() - a).count();
  std::vector<double> us;
  size_t sink = 0;
  for (int64_t i = 0; i < iterations; ++i) {
    a = Clock::now();
    CC_ASSIGN_OR_RETURN(DeResult r, RunDe(engine, o));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
    sink += r.rows.size();
  }
  json out = {{"store", args.positionals()[0]},
              {"open_s", open_s},
              {"test", first.test},
              {"notes", first.notes},
              {"rows", first.rows.size()},
              {"first_s", first_s},
              {"run", Stats(us)},
              {"sink", sink % 7}};
  std::cout << out.dump(2) << "\n";
  return Status::Ok();
}

Status Main(const std::vector<std::string>& argv) {
  CC_ASSIGN_OR_RETURN(cli::Args args, cli::Args::Parse(argv, {{"genes", true, true},
                                                              {"by", true, true},
                                                              {"where", true, true},
                                                              {"datasets", true, true},
                                                              {"metrics", true, true},
                                                              {"rollup", true, true},
                                                              {"iterations", true},
                                                              {"parallel-min-entries", true},
                                                              {"de-compare", true},
                                                              {"de-group1", true, true},
                                                              {"de-group2", true, true},
                                                              {"de-test", true},
                                                              {"no-csv", false}}));
  if (args.positionals().size() != 1) return Status::Usage("usage: cellcube-bench-query STORE ...");
  CC_ASSIGN_OR_RETURN(int64_t iterations, args.GetInt("iterations", 20000, 1, 100000000));
  EngineOptions options;
  CC_ASSIGN_OR_RETURN(
      options.parallel_min_entries,
      args.GetInt("parallel-min-entries", options.parallel_min_entries, 0, int64_t{1} << 60));
  const auto t0 = Clock::now();
  CC_ASSIGN_OR_RETURN(auto reader, StoreReader::Open(args.positionals()[0]));
  auto engine = QueryEngine::Create(std::move(reader), options);
  const double open_s = std::chrono::duration<double>(Clock::now() - t0).count();

  if (args.Get("de-compare")) return BenchDe(*engine, args, iterations, open_s);

  std::vector<Named> queries;
  if (args.Get("genes")) {
    Named n{"custom", {}};
    n.query.genes = cli::ListOption(args, "genes");
    n.query.by = cli::ListOption(args, "by");
    n.query.metrics = cli::ListOption(args, "metrics");
    CC_ASSIGN_OR_RETURN(n.query.population, cli::PopulationOptions(args));
    queries.push_back(n);
  } else {
    queries = StandardQueries(*engine);
    // The standard queries with other metrics (a median dot plot beside the mean one),
    // or rolled up (--rollup cell_type: the ontology's tree of a dot plot).
    if (args.Get("metrics"))
      for (Named& n : queries) n.query.metrics = cli::ListOption(args, "metrics");
    for (Named& n : queries) n.query.population.rollup = cli::ListOption(args, "rollup");
  }

  json out = {{"store", args.positionals()[0]},
              {"open_s", open_s},
              {"n_groups", engine->store().n_groups()},
              {"n_genes", engine->store().n_genes()},
              {"n_entries", engine->store().n_entries()},
              {"n_datasets", engine->store().n_datasets()},
              {"arrays_mapped", engine->store().arrays_mapped()},
              {"iterations", iterations},
              {"queries", json::array()}};
  for (const Named& n : queries) {
    CC_ASSIGN_OR_RETURN(QueryResult first, engine->Run(n.query));
    size_t sink = 0;
    for (int64_t i = 0; i < std::min<int64_t>(iterations / 10 + 1, 2000); ++i)  // warm up
      sink += engine->Run(n.query)->rows.size();
    std::vector<double> run_us, csv_us;
    run_us.reserve(static_cast<size_t>(iterations));
    csv_us.reserve(static_cast<size_t>(iterations));
    for (int64_t i = 0; i < iterations; ++i) {
      const auto a = Clock::now();
      auto r = engine->Run(n.query);
      const auto b = Clock::now();
      sink += r->rows.size();
      if (!args.Flag("no-csv")) sink += FormatCsv(*r).size();
      const auto c = Clock::now();
      run_us.push_back(std::chrono::duration<double, std::micro>(b - a).count());
      csv_us.push_back(std::chrono::duration<double, std::micro>(c - a).count());
    }
    int64_t entries_scanned = 0;
    for (const auto& gene : first.genes) {
      auto g = engine->ResolveGenes({gene});
      if (g.ok()) entries_scanned += engine->store().GeneEntries((*g)[0]);
    }
    json q = {{"name", n.name},
              {"query", QueryJson(n.query)},
              {"rows", first.rows.size()},
              {"splits", first.n_splits},
              {"gene_entries", entries_scanned},
              {"run", Stats(run_us)},
              {"run_csv", Stats(csv_us)},
              {"sink", sink % 7}};
    out["queries"].push_back(q);
  }
  std::cout << out.dump(2) << "\n";
  return Status::Ok();
}

}  // namespace
}  // namespace cellcube

int main(int argc, char** argv) {
  cellcube::Status s = cellcube::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!s.ok()) {
    std::cerr << "cellcube-bench-query: error: " << s.message() << "\n";
    return s.code() == cellcube::StatusCode::kUsage ? 2 : 1;
  }
  return 0;
}
