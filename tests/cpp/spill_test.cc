#include "store/spill.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "histogram/record.h"

namespace cellcube {
namespace {

// Runs whose group steps and counts need one to five varint bytes, with and without
// histogram records, written and read back through a window smaller than a run.
TEST(Spill, RunsComeBackAsTheyWereWritten) {
  auto spill = SpillFile::Create(std::filesystem::temp_directory_path().string());
  ASSERT_TRUE(spill.ok()) << spill.status().message();
  std::mt19937 rng(9);
  EntryBuffer want;
  const int n_genes = 40;
  for (int gene = 0; gene < n_genes; ++gene) {
    std::vector<SpillRecord> run;
    std::vector<uint8_t> records;
    int32_t group = static_cast<int32_t>(rng() % 3);
    const int count = gene % 7 == 3 ? 0 : 1 + static_cast<int>(rng() % 300);
    for (int k = 0; k < count; ++k) {
      const uint32_t kind = rng() % 4;
      const uint32_t nnz = kind == 0 ? 1 : kind == 1 ? 200 : kind == 2 ? 70000 : 1u << 30;
      const SpillRecord r{group, nnz, std::ldexp(double(rng()), -20), double(rng() % 1000) / 7};
      run.push_back(r);
      histogram::Counts bins{};
      bins[rng() % 64] = nnz;  // one bin: a range record of a few bytes
      const size_t before = records.size();
      histogram::AppendRecord(bins, nnz, &records);
      want.Add(group, nnz, r.sum, r.m2, records.data() + before, records.size() - before);
      group += 1 + static_cast<int32_t>(rng() % 4 == 0 ? rng() % 3000000 : rng() % 3);
    }
    ASSERT_TRUE((*spill)
                    ->AppendRun(static_cast<uint32_t>(gene), run.data(),
                                static_cast<uint32_t>(run.size()), records.data(), records.size())
                    .ok());
  }
  ASSERT_TRUE((*spill)->Flush().ok());
  std::vector<int32_t> gene_map(n_genes);
  for (int g = 0; g < n_genes; ++g) gene_map[static_cast<size_t>(g)] = g;
  auto segment = SpillSegment::Open((*spill)->fd(), 0, (*spill)->offset(), &gene_map, 512, false);
  ASSERT_TRUE(segment.ok()) << segment.status().message();
  EntryBuffer got;
  while ((*segment)->next_gene() != kNoGene) ASSERT_TRUE((*segment)->TakeRun(0, &got).ok());
  EXPECT_EQ(got.group, want.group);
  EXPECT_EQ(got.nnz, want.nnz);
  EXPECT_EQ(got.sum, want.sum);
  EXPECT_EQ(got.m2, want.m2);
  EXPECT_EQ(got.hist_end, want.hist_end);
  EXPECT_EQ(got.hist, want.hist);
}

TEST(Spill, GroupsThatDoNotAscendAreRefused) {
  auto spill = SpillFile::Create(std::filesystem::temp_directory_path().string());
  ASSERT_TRUE(spill.ok());
  const SpillRecord run[2] = {{5, 1, 1.0, 0.0}, {5, 1, 1.0, 0.0}};
  EXPECT_FALSE((*spill)->AppendRun(0, run, 2, nullptr, 0).ok());
}

}  // namespace
}  // namespace cellcube
