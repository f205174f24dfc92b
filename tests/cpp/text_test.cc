#include "util/text.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "util/parallel.h"

namespace cellcube {
namespace {

TEST(FormatPythonFloat, MatchesPythonRepr) {
  EXPECT_EQ(FormatPythonFloat(11.0), "11.0");
  EXPECT_EQ(FormatPythonFloat(0.5), "0.5");
  EXPECT_EQ(FormatPythonFloat(-2.25), "-2.25");
  EXPECT_EQ(FormatPythonFloat(0.1), "0.1");
  EXPECT_EQ(FormatPythonFloat(100000.0), "100000.0");
  EXPECT_EQ(FormatPythonFloat(1e16), "1e+16");
  EXPECT_EQ(FormatPythonFloat(1.5e16), "1.5e+16");
  EXPECT_EQ(FormatPythonFloat(1e-5), "1e-05");
  EXPECT_EQ(FormatPythonFloat(0.0001), "0.0001");
  EXPECT_EQ(FormatPythonFloat(0.0), "0.0");
  EXPECT_EQ(FormatPythonFloat(std::nan("")), "nan");
  EXPECT_EQ(FormatPythonFloat(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(FormatPythonFloat(123456789012345.6), "123456789012345.6");
}

TEST(EditDistance, CountsEditsIgnoringCase) {
  EXPECT_EQ(EditDistance("cell_type", "cell_type"), 0u);
  EXPECT_EQ(EditDistance("Cell_Type", "cell_type"), 0u);
  EXPECT_EQ(EditDistance("cell_typ", "cell_type"), 1u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(NearNames, SuggestsCloseAndContainingNames) {
  std::vector<std::string> cols = {"cell_type", "tissue", "disease", "donor_id", "sex"};
  auto near = NearNames("cell_typ", cols);
  ASSERT_FALSE(near.empty());
  EXPECT_EQ(near[0], "cell_type");
  EXPECT_EQ(NearNames("donor", cols).at(0), "donor_id");
  EXPECT_TRUE(NearNames("zzzzzzzzzz", cols).empty());
  EXPECT_NE(SuggestionSuffix("tisue", cols).find("did you mean 'tissue'"), std::string::npos);
  EXPECT_NE(SuggestionSuffix("zzzzzzzzzz", cols).find("available"), std::string::npos);
}

TEST(FormatBytes, UsesDecimalUnits) {
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytes(1500), "1.5 KB");
  EXPECT_EQ(FormatBytes(1400000000), "1.4 GB");
}

}  // namespace
}  // namespace cellcube

namespace cellcube {
namespace {

TEST(SplitList, DropsEmptyItems) {
  EXPECT_EQ(SplitList("a,b,,c,"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(SplitList("").empty());
  EXPECT_EQ(SplitList("x=1;y", ';'), (std::vector<std::string>{"x=1", "y"}));
}

TEST(Text, AsciiCaseFoldingOnly) {
  EXPECT_EQ(ToLower("CD3E-Ab_9"), "cd3e-ab_9");
  EXPECT_EQ(ToLower("\xc3\x89"), "\xc3\x89");  // UTF-8 É: bytes untouched
  EXPECT_TRUE(EqualsIgnoringCase("GZip", "gzip"));
  EXPECT_FALSE(EqualsIgnoringCase("gzip", "gzi"));
  EXPECT_FALSE(EqualsIgnoringCase("gzip", "gzjp"));
}

TEST(Text, JsonStringEscapesQuotesBackslashesAndControls) {
  std::string out;
  AppendJsonString(&out, std::string("a\"b\\c\n\x01\xc3\xa9", 9));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"");
  out.clear();
  AppendJsonString(&out, std::string_view("\0x", 2));
  EXPECT_EQ(out, "\"\\u0000x\"");
}

TEST(Parallel, EveryItemOnceOnSomeWorker) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}}) {
    for (size_t grain : {size_t{1}, size_t{64}, size_t{5000}}) {
      std::vector<std::atomic<int>> seen(n);
      std::atomic<int> bad_worker{0};
      ParallelFor(n, 4, grain, [&](int worker, size_t i) {
        if (worker < 0 || worker >= 4) bad_worker++;
        seen[i]++;
      });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << n << " " << grain << " " << i;
      EXPECT_EQ(bad_worker.load(), 0);
    }
  }
}

TEST(Parallel, UsesSeveralThreadsWhenAsked) {
  std::atomic<int> max_worker{0};
  std::vector<std::thread::id> ids(64);
  ParallelFor(64, 2, 1, [&](int worker, size_t i) {
    ids[i] = std::this_thread::get_id();
    int m = max_worker.load();
    while (worker > m && !max_worker.compare_exchange_weak(m, worker)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let the other start
  });
  EXPECT_EQ(max_worker.load(), 1);
  EXPECT_NE(std::count(ids.begin(), ids.end(), std::this_thread::get_id()), 0);
}

TEST(DatasetInput, NamesComeFromStemOrNameEquals) {
  using cli::ParseDatasetInput;
  EXPECT_EQ(ParseDatasetInput("dir/lung_1.h5ad").name, "lung_1");
  auto named = ParseDatasetInput("lung=dir/x.h5ad");
  EXPECT_EQ(named.name, "lung");
  EXPECT_EQ(named.path, "dir/x.h5ad");
  EXPECT_EQ(ParseDatasetInput("dir/a=b.h5ad").name, "a=b");
}

TEST(Text, WrapListKeepsLinesWithinTheWidth) {
  const std::vector<std::string> items = {"alpha [1]", "beta [22]", "gamma [333]", "delta [4,444]"};
  EXPECT_EQ(WrapList(items, "  col (4):", "    ", 32),
            "  col (4): alpha [1], beta [22],\n"
            "    gamma [333], delta [4,444]\n");
  EXPECT_EQ(WrapList(items, "x:", "  ", 200),
            "x: alpha [1], beta [22], gamma [333], delta [4,444]\n");
  // An item longer than the width has a line of its own.
  EXPECT_EQ(WrapList({"a", std::string(12, 'b'), "c"}, "", "", 5),
            "a,\n" + std::string(12, 'b') + ",\nc\n");
  EXPECT_EQ(WrapList({}, "empty:", "  "), "empty:\n");
}

}  // namespace
}  // namespace cellcube
