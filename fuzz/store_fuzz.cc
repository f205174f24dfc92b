// libFuzzer target: the store reader (StoreReader::Open checks the metadata and the
// arrays' bounds; CheckGene each gene's entries, CheckHistograms their histogram
// records) and the query engine, distributions included, on arbitrary file bytes. A store that
// opens must answer or refuse queries without reading out of bounds, and checking every gene must
// not either.
#include <cstddef>
#include <cstdint>

#include "cellcube/query.h"
#include "cellcube/render.h"
#include "cellcube/store_reader.h"
#include "common.h"

using namespace cellcube;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::InputFile input;
  const std::string& path = input.Write(data, size);
  auto store = StoreReader::Open(path);
  if (!store.ok()) return 0;
  (void)(*store)->CheckAllGenes();
  auto engine = QueryEngine::Create(*store);
  const StoreData& meta = (*store)->meta();
  std::vector<std::string> genes;
  const StringList& ids = (*store)->gene_ids();
  const StringList& symbols = (*store)->gene_symbols();
  for (size_t g = 0; g < ids.size() && g < 8; ++g) genes.emplace_back(ids[g]);
  if (!symbols.empty() && !symbols[symbols.size() - 1].empty())
    genes.emplace_back(symbols[symbols.size() - 1]);
  if (genes.empty()) genes.push_back("x");

  Query all;
  all.genes = genes;
  all.metrics = {"n_cells", "nnz", "frac",   "sum", "mean",        "mean_expr",
                 "var",     "std", "median", "q95", "median_expr", "max"};
  if (auto r = engine->Run(all); r.ok()) {
    (void)FormatCsv(*r);
    (void)FormatJson(*r);
  }
  // The histogram layer: distributions by dataset (checked per dataset, then per gene).
  Query dist;
  dist.genes = genes;
  dist.by = {"dataset"};
  dist.distribution = true;
  if (!meta.datasets.empty()) dist.population.datasets = {meta.datasets.front().name};
  if (auto r = engine->Run(dist); r.ok()) (void)FormatDistributionJson(*r);
  dist.population.datasets.clear();
  if (auto r = engine->Run(dist); r.ok()) (void)FormatDistributionCsv(*r);
  for (size_t c = 0; c < meta.columns.size() && c < 6; ++c) {
    Query q;
    q.genes = genes;
    q.by = {meta.columns[c]};
    if (c + 1 < meta.columns.size()) q.by.push_back(meta.columns[c + 1]);
    const auto& values = engine->ColumnValues(static_cast<int32_t>(c));
    if (!values.empty())
      q.population.where.push_back({meta.columns[c], {values.front(), values.back(), "NA"}});
    if (!meta.datasets.empty()) q.population.datasets = {meta.datasets.front().name};
    if (auto r = engine->Run(q); r.ok()) (void)FormatCsv(*r);
  }
  return 0;
}
