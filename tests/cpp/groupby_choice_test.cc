#include "aggregate/groupby_choice.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "aggregate/grouping.h"

namespace cellcube::aggregate {
namespace {

using Codes = std::vector<int32_t>;
using Reason = GroupbyLeftOut::Reason;

// The reference: distinct tuples of codes, in a std::set.
int64_t SetCount(size_t n_cells, const std::vector<const Codes*>& cols) {
  std::set<std::vector<int32_t>> seen;
  for (size_t i = 0; i < n_cells; ++i) {
    std::vector<int32_t> key;
    for (const auto* c : cols) key.push_back((*c)[i]);
    seen.insert(key);
  }
  return static_cast<int64_t>(seen.size());
}

// Codes i % m (or f(i)) for n cells.
Codes Mod(size_t n, int32_t m) {
  Codes c(n);
  for (size_t i = 0; i < n; ++i) c[i] = static_cast<int32_t>(i % static_cast<size_t>(m));
  return c;
}

int64_t Distinct(const Codes& c) {
  std::set<int32_t> s;
  for (int32_t x : c)
    if (x >= 0) s.insert(x);
  return static_cast<int64_t>(s.size());
}

GroupbyCandidate Cat(const std::string& name, const Codes& c) {
  return {name, &c, Distinct(c), true};
}

std::vector<std::string> ChosenNames(const GroupbyChoice& ch,
                                     const std::vector<GroupbyCandidate>& cands) {
  std::vector<std::string> out;
  for (size_t i : ch.chosen) out.push_back(cands[i].name);
  return out;
}

TEST(GroupbyCount, MatchesDistinctTuplesOnRandomCodes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + rng() % 300;
    const int n_cols = static_cast<int>(rng() % 5);
    std::vector<Codes> cols(static_cast<size_t>(n_cols), Codes(n));
    for (auto& c : cols) {
      // Narrow ranges take the dense table, wide ones (and big codes) the hash table.
      const int32_t width = trial % 3 == 0 ? 1000000 : static_cast<int32_t>(1 + rng() % 12);
      for (auto& x : c) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(width)) - 1;
      if (trial % 7 == 0) c[0] = -5;  // any code is a value of its own
    }
    std::vector<const Codes*> ptrs;
    for (const auto& c : cols) ptrs.push_back(&c);
    auto got = CountGroups(static_cast<int64_t>(n), ptrs);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(*got, SetCount(n, ptrs)) << "trial " << trial;
    auto prefixes = CountPrefixGroups(static_cast<int64_t>(n), ptrs);
    ASSERT_TRUE(prefixes.ok());
    ASSERT_EQ(prefixes->size(), ptrs.size() + 1);
    for (size_t m = 0; m <= ptrs.size(); ++m)
      EXPECT_EQ((*prefixes)[m], SetCount(n, {ptrs.begin(), ptrs.begin() + m}))
          << "trial " << trial << ", first " << m << " columns";
  }
}

TEST(GroupbyCount, AgreesWithGroupCells) {
  const size_t n = 500;
  Codes a = Mod(n, 7), b = Mod(n, 11), c(n);
  for (size_t i = 0; i < n; ++i) c[i] = i % 13 == 0 ? -1 : static_cast<int32_t>(i / 50);
  auto grouping = GroupCells({&a, &b, &c}, {"a", "b", "c"}, {7, 11, 10}, 100000);
  ASSERT_TRUE(grouping.ok());
  auto count = CountGroups(static_cast<int64_t>(n), {&a, &b, &c});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, grouping->n_groups());
}

TEST(GroupbyCount, EdgeCasesAndBadInput) {
  Codes a = {0, 1, 0};
  EXPECT_EQ(*CountGroups(3, {}), 1);
  EXPECT_EQ(*CountGroups(0, {}), 0);
  EXPECT_EQ(*CountGroups(3, {&a}), 2);
  Codes all_apart = {0, 1, 2};
  EXPECT_EQ(*CountGroups(3, {&all_apart, &a}), 3);
  EXPECT_EQ(*CountPrefixGroups(3, {&a, &all_apart, &a}), (std::vector<int64_t>{1, 2, 3, 3}));
  EXPECT_EQ(*CountPrefixGroups(0, {}), (std::vector<int64_t>{0}));
  Codes short_col = {0, 1};
  EXPECT_FALSE(CountGroups(3, {&a, &short_col}).ok());
  EXPECT_FALSE(CountGroups(3, {nullptr}).ok());
}

TEST(GroupbyIdentifierLike, MoreThan200OrMoreThanHalfTheCells) {
  EXPECT_FALSE(IsIdentifierLike(200, 100000));
  EXPECT_TRUE(IsIdentifierLike(201, 100000));
  EXPECT_FALSE(IsIdentifierLike(50, 100));
  EXPECT_TRUE(IsIdentifierLike(51, 100));
  EXPECT_TRUE(IsIdentifierLike(2, 3));
}

TEST(GroupbyDefault, LeavesOutAColumnWithMoreThan200Values) {
  const size_t n = 800;
  Codes ct = Mod(n, 2), sample = Mod(n, 10), clone = Mod(n, 201), wide = Mod(n, 200);
  std::vector<GroupbyCandidate> cands = {Cat("sample", sample), Cat("clone", clone),
                                         Cat("wide", wide)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  // 200 values is not identifier-like (but its groups, 4 cells each, are too small).
  ASSERT_EQ(ch->left_out.size(), 2u);
  EXPECT_EQ(ch->left_out[0].name, "clone");
  EXPECT_EQ(ch->left_out[0].reason, Reason::kIdentifierLike);
  EXPECT_EQ(ch->left_out[0].n_values, 201);
  EXPECT_EQ(ch->left_out[1].name, "wide");
  EXPECT_EQ(ch->left_out[1].reason, Reason::kDropped);
  EXPECT_EQ(ch->left_out[1].n_groups, 200);  // i % 200 fixes i % 2 and i % 10
  EXPECT_EQ(ChosenNames(*ch, cands), std::vector<std::string>{"sample"});
  EXPECT_EQ(ch->n_groups, 10);
}

TEST(GroupbyDefault, TwoHundredValuesStayWhenGroupsAreBigEnough) {
  const size_t n = 1000;
  Codes ct(n, 0), wide = Mod(n, 200);
  std::vector<GroupbyCandidate> cands = {Cat("wide", wide)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok());
  EXPECT_TRUE(ch->left_out.empty());
  EXPECT_EQ(ChosenNames(*ch, cands), std::vector<std::string>{"wide"});
  EXPECT_EQ(ch->n_groups, 200);  // exactly 5.0 cells on average: not fewer than 5
}

TEST(GroupbyDefault, LeavesOutAColumnWithMoreValuesThanHalfTheCells) {
  const size_t n = 100;
  Codes ct(n, 0), half = Mod(n, 50), over = Mod(n, 51), two = Mod(n, 2);
  std::vector<GroupbyCandidate> cands = {Cat("over", over), Cat("half", half), Cat("two", two)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok());
  ASSERT_EQ(ch->left_out.size(), 2u);
  EXPECT_EQ(ch->left_out[0].name, "over");
  EXPECT_EQ(ch->left_out[0].reason, Reason::kIdentifierLike);
  // 50 values in 100 cells is not more than half: a candidate, dropped by the loop.
  EXPECT_EQ(ch->left_out[1].name, "half");
  EXPECT_EQ(ch->left_out[1].reason, Reason::kDropped);
  EXPECT_EQ(ch->left_out[1].n_groups, 50);  // half x two: i % 50 fixes i % 2
  EXPECT_EQ(ChosenNames(*ch, cands), std::vector<std::string>{"two"});
  EXPECT_EQ(ch->n_groups, 2);
}

TEST(GroupbyDefault, DropsTheWidestColumnUntilGroupsAverageFiveCells) {
  const size_t n = 240;
  Codes ct(n), a(n), b(n), c(n), d(n);
  for (size_t i = 0; i < n; ++i) {
    ct[i] = static_cast<int32_t>(i % 3);
    a[i] = static_cast<int32_t>((i / 3) % 2);                 // 2 values
    b[i] = static_cast<int32_t>((i / 6) % 4);                 // 4 values
    c[i] = static_cast<int32_t>((i / 24) % 5 + 5 * (i % 2));  // 10 values
    d[i] = static_cast<int32_t>(i % 80);                      // 80 values
  }
  std::vector<GroupbyCandidate> cands = {Cat("a", a), Cat("b", b), Cat("c", c), Cat("d", d)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok());
  // Every step's count is the exact one, and each drop was needed.
  std::vector<const Codes*> all = {&ct, &a, &b, &c, &d};
  std::vector<const Codes*> without_d = {&ct, &a, &b, &c};
  std::vector<const Codes*> without_cd = {&ct, &a, &b};
  ASSERT_EQ(ch->left_out.size(), 2u);
  EXPECT_EQ(ch->left_out[0].name, "d");
  EXPECT_EQ(ch->left_out[0].n_groups, SetCount(n, all));
  EXPECT_EQ(ch->left_out[1].name, "c");
  EXPECT_EQ(ch->left_out[1].n_groups, SetCount(n, without_d));
  EXPECT_LT(static_cast<int64_t>(n), 5 * SetCount(n, without_d));
  EXPECT_EQ(ChosenNames(*ch, cands), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ch->n_groups, SetCount(n, without_cd));
  EXPECT_EQ(ch->left_out[0].n_groups, 240);  // every cell apart
  EXPECT_EQ(ch->left_out[1].n_groups, 120);  // cells i and i + 120 together
  EXPECT_EQ(ch->n_groups, 24);
  EXPECT_EQ(DescribeGroupbyChoice(*ch, cands, static_cast<int64_t>(n)),
            "--groupby default: grouping by 'a', 'b' (24 groups, 10.0 cells on average)\n"
            "  dropped, in this order (cells per group with it still in): 'd' (1.0), 'c' (2.0)");
}

TEST(GroupbyDefault, OnATieDropsTheLaterColumn) {
  const size_t n = 60;
  Codes ct(n, 0), x = Mod(n, 6), y(n), z = Mod(n, 2);
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<int32_t>((i / 6) % 6);
  std::vector<GroupbyCandidate> cands = {Cat("x", x), Cat("z", z), Cat("y", y)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok());
  ASSERT_GE(ch->left_out.size(), 1u);
  EXPECT_EQ(ch->left_out[0].name, "y");  // x and y both have 6 values; y comes later
  EXPECT_EQ(ChosenNames(*ch, cands), (std::vector<std::string>{"x", "z"}));
  EXPECT_EQ(ch->n_groups, 6);  // x fixes z: 10 cells each

  // The same columns in the other obs order drop x instead.
  std::vector<GroupbyCandidate> swapped = {Cat("y", y), Cat("z", z), Cat("x", x)};
  auto ch2 = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, swapped);
  ASSERT_TRUE(ch2.ok());
  ASSERT_GE(ch2->left_out.size(), 1u);
  EXPECT_EQ(ch2->left_out[0].name, "x");
}

TEST(GroupbyDefault, SkipsNarrowAndNonGroupableColumnsSilently) {
  const size_t n = 400;
  Codes ct = Mod(n, 4), one(n, 0), missing_only(n, -1), numbers = Mod(n, 400), site = Mod(n, 3);
  std::vector<GroupbyCandidate> cands = {
      Cat("one", one),
      Cat("missing_only", missing_only),
      {"numbers", &numbers, 400, false},  // numeric: never a candidate, not even left out
      {"strings", nullptr, 0, false},     // not groupable: its codes are never looked at
      Cat("site", site)};
  auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
  ASSERT_TRUE(ch.ok());
  EXPECT_TRUE(ch->left_out.empty());
  EXPECT_EQ(ChosenNames(*ch, cands), std::vector<std::string>{"site"});
  EXPECT_EQ(ch->n_groups, 12);
  EXPECT_EQ(DescribeGroupbyChoice(*ch, cands, static_cast<int64_t>(n)),
            "--groupby default: grouping by 'site' (12 groups, 33.3 cells on average)");
}

TEST(GroupbyDefault, MissingIsAValueOfItsOwnInEveryColumn) {
  // 10 cells: cell type missing in half; the column is present in one cell of each half.
  Codes ct = {0, 0, 0, 0, 0, -1, -1, -1, -1, -1};
  Codes col = {0, -1, -1, -1, -1, 1, -1, -1, -1, -1};
  std::vector<GroupbyCandidate> cands = {Cat("col", col)};
  auto ch = ChooseDefaultGroupby(10, ct, cands);
  ASSERT_TRUE(ch.ok());
  // (0,0) (0,NA) (NA,1) (NA,NA): 4 groups of 2.5 cells: dropped.
  ASSERT_EQ(ch->left_out.size(), 1u);
  EXPECT_EQ(ch->left_out[0].n_groups, 4);
  EXPECT_TRUE(ch->chosen.empty());
  EXPECT_EQ(ch->n_groups, 2);
  EXPECT_EQ(DescribeGroupbyChoice(*ch, cands, 10),
            "--groupby default: grouping by cell type only (2 groups, 5.0 cells on average)\n"
            "  dropped, in this order (cells per group with it still in): 'col' (2.5)");
}

// The rule as docs/SCALING.md words it, re-counting with SetCount after every drop.
std::pair<std::vector<size_t>, std::vector<std::pair<size_t, int64_t>>> NaiveChoice(
    size_t n_cells, const Codes& ct, const std::vector<GroupbyCandidate>& cands) {
  std::vector<size_t> chosen;
  for (size_t i = 0; i < cands.size(); ++i)
    if (cands[i].groupable && cands[i].n_values >= 2 && cands[i].n_values <= 200 &&
        2 * static_cast<size_t>(cands[i].n_values) <= n_cells)
      chosen.push_back(i);
  std::vector<std::pair<size_t, int64_t>> dropped;
  for (;;) {
    std::vector<const Codes*> cols = {&ct};
    for (size_t i : chosen) cols.push_back(cands[i].codes);
    const int64_t groups = SetCount(n_cells, cols);
    if (chosen.empty() || static_cast<int64_t>(n_cells) >= 5 * groups) break;
    size_t widest = 0;
    for (size_t k = 0; k < chosen.size(); ++k)
      if (cands[chosen[k]].n_values >= cands[chosen[widest]].n_values) widest = k;
    dropped.push_back({chosen[widest], groups});
    chosen.erase(chosen.begin() + static_cast<std::ptrdiff_t>(widest));
  }
  return {chosen, dropped};
}

TEST(GroupbyDefault, MatchesANaiveReCountOnRandomInputs) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 5 + rng() % 400;
    Codes ct(n);
    const uint32_t n_types = 1 + rng() % 8;
    for (auto& x : ct) x = static_cast<int32_t>(rng() % n_types) - (rng() % 20 == 0 ? 1 : 0);
    const size_t n_cols = rng() % 7;
    std::vector<Codes> cols(n_cols, Codes(n));
    std::vector<GroupbyCandidate> cands;
    for (size_t k = 0; k < n_cols; ++k) {
      // Few distinct widths, so ties are common.
      const uint32_t width = std::vector<uint32_t>{1, 2, 3, 3, 6, 6, 40, 250}[rng() % 8];
      for (auto& x : cols[k]) x = rng() % 10 == 0 ? -1 : static_cast<int32_t>(rng() % width);
      std::string name = "c";
      name += std::to_string(k);  // (not "c" + ...: a false -Wrestrict of GCC 12 at -O3)
      cands.push_back({name, &cols[k], Distinct(cols[k]), rng() % 6 != 0});
    }
    auto ch = ChooseDefaultGroupby(static_cast<int64_t>(n), ct, cands);
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    auto [want_chosen, want_dropped] = NaiveChoice(n, ct, cands);
    EXPECT_EQ(ch->chosen, want_chosen) << "trial " << trial;
    std::vector<std::pair<size_t, int64_t>> got_dropped;
    for (const auto& l : ch->left_out)
      if (l.reason == Reason::kDropped) got_dropped.push_back({l.index, l.n_groups});
    EXPECT_EQ(got_dropped, want_dropped) << "trial " << trial;
    std::vector<const Codes*> final_cols = {&ct};
    for (size_t i : want_chosen) final_cols.push_back(cands[i].codes);
    EXPECT_EQ(ch->n_groups, SetCount(n, final_cols)) << "trial " << trial;
  }
}

TEST(GroupbyDefault, BadCandidatesAreErrors) {
  Codes ct = Mod(20, 2), col = Mod(20, 2), short_col = Mod(19, 2);
  EXPECT_FALSE(ChooseDefaultGroupby(20, ct, {{"none", nullptr, 2, true}}).ok());
  EXPECT_FALSE(ChooseDefaultGroupby(20, ct, {{"short", &short_col, 2, true}}).ok());
  EXPECT_FALSE(ChooseDefaultGroupby(21, ct, {Cat("col", col)}).ok());
}

TEST(GroupbyDescribe, TheNoteNamesWhatWasLeftOutAndDropped) {
  Codes unused;
  std::vector<GroupbyCandidate> cands = {{"clone_id", nullptr, 150, true},
                                         {"sample", &unused, 20, true},
                                         {"patient", &unused, 8, true},
                                         {"cdr3", &unused, 90, true}};
  GroupbyChoice ch;
  ch.chosen = {1, 2};
  ch.left_out = {{0, "clone_id", Reason::kIdentifierLike, 150, 0},
                 {3, "cdr3", Reason::kDropped, 90, 150}};
  ch.n_groups = 40;
  EXPECT_EQ(DescribeGroupbyChoice(ch, cands, 200),
            "--groupby default: grouping by 'sample', 'patient' (40 groups, 5.0 cells on "
            "average)\n"
            "  left out as identifier-like (distinct values in 200 cells): 'clone_id' (150)\n"
            "  dropped, in this order (cells per group with it still in): 'cdr3' (1.3)");
  // Averages are rounded down: 499 cells in 100 groups are not "5.0".
  ch.left_out = {{3, "cdr3", Reason::kDropped, 90, 100}};
  ch.n_groups = 1;
  EXPECT_EQ(DescribeGroupbyChoice(ch, cands, 499),
            "--groupby default: grouping by 'sample', 'patient' (1 group, 499.0 cells on "
            "average)\n"
            "  dropped, in this order (cells per group with it still in): 'cdr3' (4.9)");
}

TEST(GroupbyDescribe, LongListsWrapAtOneHundredColumnsAndKeepEveryName) {
  // wu2020's shape: dozens of columns dropped; the note used to be one line of 1,900
  // characters.
  Codes unused;
  std::vector<GroupbyCandidate> cands;
  GroupbyChoice ch;
  for (int k = 0; k < 40; ++k) {
    const std::string name = "IR_VDJ_" + std::to_string(k) + "_cdr3_nt";
    cands.push_back({name, &unused, 150, true});
    ch.left_out.push_back({static_cast<size_t>(k), name,
                           k < 5 ? Reason::kIdentifierLike : Reason::kDropped, 150, 200});
  }
  cands.push_back({"source", &unused, 8, true});
  ch.chosen = {40};
  ch.n_groups = 40;
  const std::string lead = "dataset 'wu2020': ";
  const std::string note = DescribeGroupbyChoice(ch, cands, 200, lead);
  EXPECT_EQ(note.substr(0, note.find('\n')),
            lead + "--groupby default: grouping by 'source' (40 groups, 5.0 cells on average)");
  EXPECT_NE(note.back(), '\n');
  size_t n_lines = 0, at = 0;
  for (size_t next; at <= note.size(); at = next + 1, ++n_lines) {
    next = note.find('\n', at);
    if (next == std::string::npos) next = note.size();
    EXPECT_LE(next - at, 100u) << note.substr(at, next - at);
    if (n_lines > 0) {
      EXPECT_EQ(note.compare(at, 2, "  "), 0);  // under the head line
    }
  }
  EXPECT_GE(n_lines, 5u);
  for (int k = 0; k < 40; ++k) {
    const std::string item =
        "'IR_VDJ_" + std::to_string(k) + "_cdr3_nt' (" + (k < 5 ? "150" : "1.0") + ")";
    EXPECT_NE(note.find(item), std::string::npos) << item;
  }
}

TEST(GroupbyExplicit, HonouredWithAWarningOnlyWhenGroupsAverageFewerThanFive) {
  const size_t n = 200;
  Codes ct = Mod(n, 4), clone = Mod(n, 150), sample = Mod(n, 8);
  // Explicit columns are never left out, whatever their values: only a warning.
  auto warn =
      SmallGroupsWarning(static_cast<int64_t>(n), ct, {Cat("sample", sample), Cat("clone", clone)});
  ASSERT_TRUE(warn.ok());
  const int64_t groups = SetCount(n, {&ct, &sample, &clone});
  EXPECT_EQ(*warn, "--groupby 'sample', 'clone' gives " + std::to_string(groups) +
                       " groups of 1.0 cells on average; statistics of so few cells are noisy: "
                       "leave out columns with many values ('clone' has 150), or omit --groupby "
                       "for the default");
  auto fine = SmallGroupsWarning(static_cast<int64_t>(n), ct, {Cat("sample", sample)});
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(*fine, "");  // 8 groups (4 | 8) of 25 cells
  Codes fine_ct = Mod(n, 40), tiny_ct = Mod(n, 41);
  EXPECT_EQ(*SmallGroupsWarning(static_cast<int64_t>(n), fine_ct, {}), "");
  EXPECT_EQ(*SmallGroupsWarning(static_cast<int64_t>(n), tiny_ct, {}),
            "--groupby '' gives 41 groups of 4.8 cells on average; statistics of so few cells "
            "are noisy (the cell-type column alone splits the cells this finely)");
}

}  // namespace
}  // namespace cellcube::aggregate

namespace cellcube::aggregate {
namespace {

TEST(GroupbyChoice, DesignColumnsAreNamedByAWordOfTheirName) {
  for (const char* yes : {"patient", "Sample", "sample_id", "donor_id", "cancer_stage", "Sex",
                          "tissue.general", "treatment-arm", "DiseaseState2 disease"})
    EXPECT_TRUE(IsDesignColumn(yes)) << yes;
  for (const char* no :
       {"IR_VJ_1_locus", "clonotype_orig", "batch", "leiden", "sexy", "stages", "subsample", ""})
    EXPECT_FALSE(IsDesignColumn(no)) << no;
}

TEST(GroupbyChoice, TheDesignIsDroppedLast) {
  // 40 cells, one cell type: 'locus' (4 values) and 'patient' (8 values) together give
  // 32 groups; either alone gives few enough. The wider 'patient' stays: design.
  const int64_t n = 40;
  std::vector<int32_t> cell_type(n, 0), locus(n), patient(n);
  for (int64_t i = 0; i < n; ++i) {
    locus[static_cast<size_t>(i)] = static_cast<int32_t>(i % 4);
    patient[static_cast<size_t>(i)] = static_cast<int32_t>((i / 4) % 8);
  }
  const std::vector<GroupbyCandidate> candidates = {{"patient", &patient, 8, true},
                                                    {"locus", &locus, 4, true}};
  auto choice = ChooseDefaultGroupby(n, cell_type, candidates);
  ASSERT_TRUE(choice.ok()) << choice.status().message();
  ASSERT_EQ(choice->chosen, std::vector<size_t>{0});
  EXPECT_EQ(choice->left_out.at(0).name, "locus");
}

}  // namespace
}  // namespace cellcube::aggregate
