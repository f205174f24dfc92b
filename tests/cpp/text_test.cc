#include "util/text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

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

}  // namespace
}  // namespace cellcube
