// TermIndex (src/ontology/term_index.h): look-ups, subtree membership and the roll-up's
// shown rows (docs/ONTOLOGY.md "Roll-up": pruning, pre-order, depth) on a small tree
// with a term of two parents.
#include "ontology/term_index.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace cellcube::ontology {
namespace {

// Terms by id with their labels and ancestors (ids), in the embedded form.
StoreOntologies Tree(
    const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>& terms) {
  StoreOntologies o;
  o.ontologies.push_back({"CL", "v1"});
  std::map<std::string, int32_t> index;
  for (const auto& [id, label, anc] : terms) index[id] = 0;
  int32_t i = 0;
  for (auto& [id, t] : index) t = i++;
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> by_id;
  for (const auto& [id, label, anc] : terms) by_id[id] = {label, anc};
  for (const auto& [id, entry] : by_id) {
    o.term_ids.push_back(id);
    o.term_labels.push_back(entry.first);
    o.term_ontology.push_back(0);
    std::vector<int32_t> anc;
    for (const auto& a : entry.second) anc.push_back(index.at(a));
    std::sort(anc.begin(), anc.end());
    for (int32_t a : anc) {
      o.ancestors.push_back(a);
      o.ancestor_distance.push_back(1);
    }
    o.ancestor_begin.push_back(static_cast<int64_t>(o.ancestors.size()));
  }
  return o;
}

StoreOntologies Example() {
  return Tree({{"X:1", "cell", {}},
               {"X:2", "leukocyte", {"X:1"}},
               {"X:3", "lymphocyte", {"X:2", "X:1"}},
               {"X:4", "T cell", {"X:3", "X:2", "X:1"}},
               {"X:5", "CD4 T", {"X:4", "X:3", "X:2", "X:1"}},
               {"X:6", "CD8 T", {"X:4", "X:3", "X:2", "X:1"}},
               {"X:7", "B cell", {"X:3", "X:2", "X:1"}},
               {"X:8", "epithelial", {"X:1"}},
               {"X:9", "dag child", {"X:4", "X:8", "X:3", "X:2", "X:1"}}});
}

// The (term, cells) pairs of the terms holding cells.
std::vector<std::pair<int32_t, int64_t>> Own(const std::vector<int64_t>& cells) {
  std::vector<std::pair<int32_t, int64_t>> out;
  for (size_t t = 0; t < cells.size(); ++t)
    if (cells[t] > 0) out.emplace_back(static_cast<int32_t>(t), cells[t]);
  return out;
}

std::vector<std::string> Labels(const StoreOntologies& o, const TermIndex::Shown& s) {
  std::vector<std::string> out;
  for (int32_t t : s.terms) out.push_back(o.term_labels[static_cast<size_t>(t)]);
  return out;
}

TEST(OntologyTermIndex, FindsByIdOrLabelAnyCase) {
  const StoreOntologies o = Example();
  ASSERT_TRUE(o.Validate().ok());
  const TermIndex index(o);
  EXPECT_EQ(index.Find(0, "x:4"), 3);
  EXPECT_EQ(index.Find(0, "t CELL"), 3);
  EXPECT_EQ(index.FindLabel(0, "T cell"), 3);
  EXPECT_EQ(index.FindLabel(0, "t cell"), -1);  // a value is its label, exactly
  EXPECT_EQ(index.Find(0, "NK cell"), -1);
  EXPECT_EQ(index.Find(1, "T cell"), -1);  // another ontology
}

TEST(OntologyTermIndex, SubtreesAndParentsFollowTheAncestorMaps) {
  const StoreOntologies o = Example();
  const TermIndex index(o);
  EXPECT_TRUE(index.InSubtree(8, 3));   // dag child under T cell
  EXPECT_TRUE(index.InSubtree(8, 7));   // and under epithelial
  EXPECT_FALSE(index.InSubtree(6, 3));  // B cell is no T cell
  EXPECT_TRUE(index.InSubtree(3, 3));
  EXPECT_EQ(index.Parents(8), (std::vector<int32_t>{3, 7}));  // T cell, epithelial
  EXPECT_EQ(index.Parents(4), (std::vector<int32_t>{3}));
  EXPECT_TRUE(index.Parents(0).empty());
}

TEST(OntologyTermIndex, RowsPruneTheChainAboveTheFirstBranching) {
  const StoreOntologies o = Example();
  const TermIndex index(o);
  std::vector<int64_t> own(9, 0);
  own[4] = 10;  // CD4 T
  own[5] = 5;   // CD8 T
  own[6] = 7;   // B cell
  const TermIndex::Shown s = index.Rows(Own(own));
  // cell and leukocyte hold exactly lymphocyte's 22 cells: left out.
  EXPECT_EQ(Labels(o, s),
            (std::vector<std::string>{"lymphocyte", "B cell", "T cell", "CD4 T", "CD8 T"}));
  EXPECT_EQ(s.depth, (std::vector<int32_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(s.cells, (std::vector<int64_t>{22, 7, 15, 10, 5}));
}

TEST(OntologyTermIndex, ATermOfTwoParentsComesOnceUnderTheLastWithDepthFromBoth) {
  const StoreOntologies o = Example();
  const TermIndex index(o);
  std::vector<int64_t> own(9, 0);
  own[4] = 10;
  own[5] = 5;
  own[6] = 7;
  own[7] = 2;  // epithelial's own cells
  own[8] = 3;  // dag child
  const TermIndex::Shown s = index.Rows(Own(own));
  EXPECT_EQ(Labels(o, s), (std::vector<std::string>{"cell", "epithelial", "lymphocyte", "B cell",
                                                    "T cell", "CD4 T", "CD8 T", "dag child"}));
  EXPECT_EQ(s.depth, (std::vector<int32_t>{0, 1, 1, 2, 2, 3, 3, 3}));
  // Each cell once per row: cell holds 10 + 5 + 7 + 2 + 3, though dag child reaches it twice.
  EXPECT_EQ(s.cells.front(), 27);
  EXPECT_EQ(s.cells.back(), 3);
}

TEST(OntologyTermIndex, ASingleTermShowsAloneAndNothingShowsNothing) {
  const StoreOntologies o = Example();
  const TermIndex index(o);
  std::vector<int64_t> own(9, 0);
  EXPECT_TRUE(index.Rows(Own(own)).terms.empty());
  own[3] = 4;  // cells labelled just "T cell": its ancestors hold the same cells
  const TermIndex::Shown s = index.Rows(Own(own));
  EXPECT_EQ(Labels(o, s), (std::vector<std::string>{"T cell"}));
  EXPECT_EQ(s.depth, (std::vector<int32_t>{0}));
}

}  // namespace
}  // namespace cellcube::ontology
