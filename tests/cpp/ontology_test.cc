// The ontology library (src/ontology): reading term maps (the published CL, UBERON and
// MONDO files, and small maps written here as plain, gzip and zstd), matching values to
// terms with the traps of the real files (docs/ONTOLOGY.md "What is matched"), binding
// columns, embedding used terms and uniting two stores' terms. Expectations come from
// the files themselves (checked with python on the published files) or from plain loops
// over the maps, not from the code under test.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ontology/embed.h"
#include "ontology/matcher.h"
#include "ontology/term_map.h"

namespace cellcube::ontology {
namespace {

const std::string kDir = CELLCUBE_ONTOLOGY_DATA;

// Each real map is read once for the whole suite (the three take a fraction of a second,
// but are used by most tests); the load time goes to the log.
const TermMap& Real(const std::string& file) {
  static std::map<std::string, TermMap> loaded;
  auto it = loaded.find(file);
  if (it != loaded.end()) return it->second;
  const auto start = std::chrono::steady_clock::now();
  auto map = LoadTermMap(kDir + "/" + file);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(map.ok()) << map.status().message();
  std::printf("[ load ] %s: %.0f ms\n", file.c_str(), ms);
  return loaded.emplace(file, map.ok() ? std::move(map).value() : TermMap()).first->second;
}
const TermMap& Cl() { return Real("CL-ontology-v2026-03-26.json.zst"); }
const TermMap& Uberon() { return Real("UBERON-ontology-v2026-04-01.json.zst"); }
const TermMap& Mondo() { return Real("MONDO-ontology-v2026-05-05.json.zst"); }

std::string Lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// The term's ancestors as (id, distance), from the CSR arrays.
std::map<std::string, int32_t> AncestorsOf(const TermMap& m, int32_t t) {
  std::map<std::string, int32_t> out;
  const auto i = static_cast<size_t>(t);
  for (int64_t k = m.ancestor_begin[i]; k < m.ancestor_begin[i + 1]; ++k)
    out[m.ids[static_cast<size_t>(m.ancestors[static_cast<size_t>(k)])]] =
        m.ancestor_distance[static_cast<size_t>(k)];
  return out;
}
std::map<std::string, int32_t> AncestorsOf(const StoreOntologies& o, int32_t t) {
  std::map<std::string, int32_t> out;
  const auto i = static_cast<size_t>(t);
  for (int64_t k = o.ancestor_begin[i]; k < o.ancestor_begin[i + 1]; ++k)
    out[o.term_ids[static_cast<size_t>(o.ancestors[static_cast<size_t>(k)])]] =
        o.ancestor_distance[static_cast<size_t>(k)];
  return out;
}
std::vector<std::string> SynonymsOf(const TermMap& m, int32_t t) {
  const auto i = static_cast<size_t>(t);
  return {m.synonyms.begin() + m.synonym_begin[i], m.synonyms.begin() + m.synonym_begin[i + 1]};
}

// Every array consistent with the ids: sizes, ascending ids, ascending in-range ancestors.
void ExpectWellFormed(const TermMap& m) {
  const auto n = static_cast<size_t>(m.size());
  ASSERT_EQ(m.labels.size(), n);
  ASSERT_EQ(m.deprecated.size(), n);
  ASSERT_EQ(m.replaced_by.size(), n);
  ASSERT_EQ(m.ancestor_begin.size(), n + 1);
  ASSERT_EQ(m.synonym_begin.size(), n + 1);
  ASSERT_EQ(m.ancestors.size(), m.ancestor_distance.size());
  EXPECT_EQ(m.ancestor_begin.back(), static_cast<int64_t>(m.ancestors.size()));
  EXPECT_EQ(m.synonym_begin.back(), static_cast<int64_t>(m.synonyms.size()));
  for (size_t t = 1; t < n; ++t) ASSERT_LT(m.ids[t - 1], m.ids[t]);
  for (size_t t = 0; t < n; ++t) {
    for (int64_t k = m.ancestor_begin[t]; k < m.ancestor_begin[t + 1]; ++k) {
      const int32_t a = m.ancestors[static_cast<size_t>(k)];
      ASSERT_TRUE(a >= 0 && a < m.size() && a != static_cast<int32_t>(t));
      if (k > m.ancestor_begin[t]) {
        ASSERT_LT(m.ancestors[static_cast<size_t>(k - 1)], a);
      }
    }
    const int32_t r = m.replaced_by[t];
    ASSERT_TRUE(r >= -1 && r < m.size());
  }
}

int64_t CountDeprecated(const TermMap& m) {
  return std::count(m.deprecated.begin(), m.deprecated.end(), uint8_t{1});
}

TEST(OntologyTermMap, RealMapsCountsNamesAndVersions) {
  EXPECT_EQ(Cl().size(), 3596);
  EXPECT_EQ(Uberon().size(), 16358);
  EXPECT_EQ(Mondo().size(), 31958);
  EXPECT_EQ(Cl().name, "CL");
  EXPECT_EQ(Uberon().name, "UBERON");
  EXPECT_EQ(Mondo().name, "MONDO");
  EXPECT_EQ(Cl().version, "v2026-03-26");
  EXPECT_EQ(Uberon().version, "v2026-04-01");
  EXPECT_EQ(Mondo().version, "v2026-05-05");
  EXPECT_EQ(CountDeprecated(Cl()), 272);
  EXPECT_EQ(CountDeprecated(Mondo()), 3968);
  EXPECT_EQ(Cl().synonyms.size(), 2804u);
  for (const TermMap* m : {&Cl(), &Uberon(), &Mondo()}) ExpectWellFormed(*m);
}

TEST(OntologyTermMap, TCellAndItsAncestors) {
  const TermMap& cl = Cl();
  const int32_t t = cl.Find("CL:0000084");
  ASSERT_GE(t, 0);
  EXPECT_EQ(cl.labels[static_cast<size_t>(t)], "T cell");
  EXPECT_EQ(cl.deprecated[static_cast<size_t>(t)], 0);
  const std::map<std::string, int32_t> expected = {
      {"CL:0000542", 1}, {"CL:0000842", 2}, {"CL:0000226", 3}, {"CL:0000738", 3}, {"CL:0000255", 4},
      {"CL:0002242", 4}, {"CL:0000219", 4}, {"CL:0000988", 4}, {"CL:0000000", 5}};
  EXPECT_EQ(AncestorsOf(cl, t), expected);
  EXPECT_EQ(cl.labels[static_cast<size_t>(cl.Find("CL:0000542"))], "lymphocyte");
  EXPECT_EQ(SynonymsOf(cl, t),
            (std::vector<std::string>{"T lymphocyte", "T-cell", "T-lymphocyte"}));
  EXPECT_EQ(cl.Find("cl:0000084"), -1);  // TermMap::Find is exact; the matcher folds case
  EXPECT_EQ(cl.Find("CL:9999999"), -1);
  // Deprecated, replaced by a live term; by a term of another ontology (not in the map).
  const int32_t old = cl.Find("CL:0000003");
  EXPECT_EQ(cl.deprecated[static_cast<size_t>(old)], 1);
  EXPECT_EQ(cl.replaced_by[static_cast<size_t>(old)], cl.Find("CL:0000000"));
  EXPECT_EQ(cl.replaced_by[static_cast<size_t>(cl.Find("CL:0000002"))], -1);  // CLO:0000019
}

TEST(OntologyMatcher, EverySpellingOfTCellIsOneTerm) {
  const Matcher m(Cl());
  const int32_t t = Cl().Find("CL:0000084");
  const std::vector<std::pair<std::string, MatchKind>> spellings = {
      {"T cell", MatchKind::kLabel},         {"t cell", MatchKind::kLabel},
      {"T CELL", MatchKind::kLabel},         {"T-lymphocyte", MatchKind::kSynonym},
      {"t lymphocyte", MatchKind::kSynonym}, {"CL:0000084", MatchKind::kId},
      {"cl:0000084", MatchKind::kId}};
  for (const auto& [value, kind] : spellings) {
    const Match got = m.Find(value);
    EXPECT_EQ(got.term, t) << value;
    EXPECT_EQ(got.kind, kind) << value;
    EXPECT_EQ(got.deprecated, -1) << value;
  }
  for (const std::string value : {"T cel", " T cell", "T cell ", "", "NA", "T_cell"})
    EXPECT_EQ(m.Find(value).term, -1) << "'" << value << "'";
}

TEST(OntologyMatcher, DeprecatedTerms) {
  const TermMap& cl = Cl();
  const Matcher m(cl);
  // A deprecated id whose replaced_by is live: that term, naming the deprecated one.
  Match got = m.Find("CL:0000003");
  EXPECT_EQ(got.term, cl.Find("CL:0000000"));
  EXPECT_EQ(got.kind, MatchKind::kReplaced);
  EXPECT_EQ(got.deprecated, cl.Find("CL:0000003"));
  EXPECT_EQ(m.Find("cl:0000003").kind, MatchKind::kReplaced);
  // Replaced by a deprecated term (CL:0000215), by another ontology's term, or by none.
  EXPECT_EQ(m.Find("CL:0000073").term, -1);
  EXPECT_EQ(m.Find("CL:0000002").term, -1);
  EXPECT_EQ(m.Find("CL:0000004").term, -1);
  // A deprecated label is nobody's live label or synonym here, and matches nothing.
  EXPECT_EQ(m.Find("obsolete native cell").term, -1);
  for (size_t t = 0; t < cl.ids.size(); ++t)
    if (cl.deprecated[t] && !cl.labels[t].empty()) {
      const Match d = m.Find(cl.labels[t]);
      EXPECT_TRUE(d.term < 0 || !cl.deprecated[static_cast<size_t>(d.term)]) << cl.labels[t];
    }
}

TEST(OntologyMatcher, TrapsOfThePublishedFiles) {
  // MONDO's "cad" is a synonym of three live terms: ambiguous, so nothing.
  const Matcher mondo(Mondo());
  for (const char* id : {"MONDO:0018922", "MONDO:0100077", "MONDO:0005010"}) {
    const auto syn = SynonymsOf(Mondo(), Mondo().Find(id));
    EXPECT_NE(std::find(syn.begin(), syn.end(), "CAD"), syn.end()) << id;
  }
  EXPECT_EQ(mondo.Find("cad").term, -1);
  EXPECT_EQ(mondo.Find("CAD").term, -1);
  // UBERON's nasal artery has the synonym "NA": NA is never a term.
  const Matcher uberon(Uberon());
  const auto na = SynonymsOf(Uberon(), Uberon().Find("UBERON:2005085"));
  EXPECT_EQ(na, std::vector<std::string>{"NA"});
  EXPECT_EQ(uberon.Find("NA").term, -1);
  EXPECT_EQ(uberon.Find("na").term, -1);
  EXPECT_EQ(uberon.Find("nasal artery").term, Uberon().Find("UBERON:2005085"));
  // CL:4072006's synonym "substantia nigra dopaminergic neuron" is CL:4042025's label:
  // the value is that label's term, never the synonym's.
  const Matcher cl(Cl());
  const auto syn = SynonymsOf(Cl(), Cl().Find("CL:4072006"));
  EXPECT_NE(std::find(syn.begin(), syn.end(), "substantia nigra dopaminergic neuron"), syn.end());
  const Match got = cl.Find("Substantia nigra dopaminergic neuron");
  EXPECT_EQ(got.term, Cl().Find("CL:4042025"));
  EXPECT_EQ(got.kind, MatchKind::kLabel);
}

// Every synonym of every live term, against the rule computed with plain loops: it
// matches by synonym exactly when one live term has it, no term's label (any case) is it,
// it is no id and not "NA".
void ExpectSynonymRule(const TermMap& map) {
  const Matcher m(map);
  std::map<std::string, std::set<int32_t>> owners;
  std::set<std::string> labels, live_labels, ids;
  for (int32_t t = 0; t < map.size(); ++t) {
    const auto i = static_cast<size_t>(t);
    labels.insert(Lower(map.labels[i]));
    ids.insert(Lower(map.ids[i]));
    if (map.deprecated[i]) continue;
    live_labels.insert(Lower(map.labels[i]));
    for (const auto& s : SynonymsOf(map, t)) owners[Lower(s)].insert(t);
  }
  int64_t unique = 0, refused = 0;
  for (const auto& [syn, who] : owners) {
    if (ids.count(syn) || live_labels.count(syn)) continue;  // matched before synonyms
    const bool ok = who.size() == 1 && !labels.count(syn) && syn != "na";
    const Match got = m.Find(syn);
    if (ok) {
      ++unique;
      EXPECT_EQ(got.term, *who.begin()) << syn;
      EXPECT_EQ(got.kind, MatchKind::kSynonym) << syn;
    } else {
      ++refused;
      EXPECT_EQ(got.term, -1) << syn;
    }
  }
  EXPECT_GT(unique, 0);
  std::printf("[ synonyms ] %s: %lld match, %lld refused\n", map.name.c_str(),
              static_cast<long long>(unique), static_cast<long long>(refused));
}

TEST(OntologyMatcher, SynonymRuleOverWholeMaps) {
  ExpectSynonymRule(Cl());
  ExpectSynonymRule(Uberon());
  ExpectSynonymRule(Mondo());
}

// --- Small maps written here ---------------------------------------------------------

// Four live terms, two deprecated (one replaced by a live term, one by a term of another
// ontology); fields nobody keeps, nested; ancestors listed out of order, one unknown.
const char* const kSmall = R"({
  "X:0000003": {"label": "child", "deprecated": false,
                "ancestors": {"X:0000002": 1, "X:0000001": 2, "Y:0000001": 3},
                "synonyms": ["kid", "shared", "root"],
                "description": "a {tricky} \"string\" [with] brackets",
                "term_tracker": {"a": [1, {"b": [true, null, 2.5]}], "c": {}},
                "consider": ["X:0000009"], "comments": []},
  "X:0000001": {"label": "Root", "ancestors": {}, "synonyms": ["top"], "deprecated": false,
                "replaced_by": null},
  "X:0000002": {"label": "middle", "ancestors": {"X:0000001": 1}, "synonyms": ["shared"],
                "deprecated": false},
  "X:0000004": {"label": "obsolete middle", "deprecated": true, "replaced_by": "X:0000002",
                "ancestors": {}, "synonyms": ["old"]},
  "X:0000005": {"label": "gone", "deprecated": true, "replaced_by": "Z:0000001"},
  "Q:0000001": {"label": "stray", "synonyms": ["obsolete middle", "lonely"]}
})";

std::string Gzip(const std::string& plain) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, plain.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Zstd(const std::string& plain) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

class OntologyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cellcube-ontology-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string dir_;
};

void ExpectSameTerms(const TermMap& a, const TermMap& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.deprecated, b.deprecated);
  EXPECT_EQ(a.replaced_by, b.replaced_by);
  EXPECT_EQ(a.ancestor_begin, b.ancestor_begin);
  EXPECT_EQ(a.ancestors, b.ancestors);
  EXPECT_EQ(a.ancestor_distance, b.ancestor_distance);
  EXPECT_EQ(a.synonym_begin, b.synonym_begin);
  EXPECT_EQ(a.synonyms, b.synonyms);
}

TEST_F(OntologyFiles, SmallMapKeepsWhatMatchingNeeds) {
  auto got = LoadTermMap(Write("X-ontology-v1.2.json", kSmall));
  ASSERT_TRUE(got.ok()) << got.status().message();
  const TermMap& m = *got;
  ExpectWellFormed(m);
  EXPECT_EQ(m.name, "X");  // 5 of 6 ids
  EXPECT_EQ(m.version, "v1");
  EXPECT_EQ(m.ids, (std::vector<std::string>{"Q:0000001", "X:0000001", "X:0000002", "X:0000003",
                                             "X:0000004", "X:0000005"}));
  EXPECT_EQ(m.labels, (std::vector<std::string>{"stray", "Root", "middle", "child",
                                                "obsolete middle", "gone"}));
  EXPECT_EQ(m.deprecated, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(m.replaced_by, (std::vector<int32_t>{-1, -1, -1, -1, 2, -1}));
  // child: ancestors ascending by index, Y:0000001 (not in the map) dropped.
  EXPECT_EQ(m.ancestor_begin, (std::vector<int64_t>{0, 0, 0, 1, 3, 3, 3}));
  EXPECT_EQ(m.ancestors, (std::vector<int32_t>{1, 1, 2}));
  EXPECT_EQ(m.ancestor_distance, (std::vector<int32_t>{1, 2, 1}));
  EXPECT_EQ(SynonymsOf(m, 3), (std::vector<std::string>{"kid", "shared", "root"}));
  EXPECT_EQ(SynonymsOf(m, 0), (std::vector<std::string>{"obsolete middle", "lonely"}));
}

TEST_F(OntologyFiles, SmallMapMatching) {
  auto got = ParseTermMap(kSmall, "X.json");
  ASSERT_TRUE(got.ok()) << got.status().message();
  const Matcher m(*got);
  EXPECT_EQ(m.Find("root").term, 1);  // the label; also child's synonym (a label: refused)
  EXPECT_EQ(m.Find("root").kind, MatchKind::kLabel);
  EXPECT_EQ(m.Find("TOP").kind, MatchKind::kSynonym);
  EXPECT_EQ(m.Find("kid").term, 3);
  EXPECT_EQ(m.Find("lonely").term, 0);
  EXPECT_EQ(m.Find("shared").term, -1);           // two live terms
  EXPECT_EQ(m.Find("obsolete middle").term, -1);  // a deprecated label, and stray's synonym
  EXPECT_EQ(m.Find("old").term, -1);              // a deprecated term's synonym
  EXPECT_EQ(m.Find("x:0000004").term, 2);
  EXPECT_EQ(m.Find("x:0000004").kind, MatchKind::kReplaced);
  EXPECT_EQ(m.Find("X:0000005").term, -1);  // replaced by another ontology's term
  EXPECT_EQ(m.Find("gone").term, -1);
}

TEST_F(OntologyFiles, PlainGzipAndZstdParseIdentically) {
  auto plain = LoadTermMap(Write("X-ontology-v7.json", kSmall));
  auto gz = LoadTermMap(Write("X-ontology-v7.json.gz", Gzip(kSmall)));
  auto zst = LoadTermMap(Write("X-ontology-v7.json.zst", Zstd(kSmall)));
  auto misnamed = LoadTermMap(Write("X.json", Zstd(kSmall)));  // content decides, not name
  auto memory = ParseTermMap(Gzip(kSmall), "X-ontology-v7.json.gz");
  for (const auto* r : {&plain, &gz, &zst, &misnamed, &memory})
    ASSERT_TRUE(r->ok()) << r->status().message();
  for (const auto* r : {&gz, &zst, &misnamed, &memory}) ExpectSameTerms(*plain, **r);
  EXPECT_EQ(gz->version, "v7");
  EXPECT_EQ(memory->source, "X-ontology-v7.json.gz");
  EXPECT_EQ(misnamed->version, "");
}

TEST_F(OntologyFiles, LargeInputsStreamAcrossChunks) {
  // Many terms, so the inflated text spans many of the reader's chunks, compressed in
  // two zstd frames and two gzip members (concatenations the tools produce).
  std::ostringstream json;
  json << "{";
  for (int i = 0; i < 20000; ++i)
    json << (i ? "," : "") << "\"X:" << 1000000 + i << "\": {\"label\": \"term " << i
         << "\", \"ancestors\": {\"X:1000000\": " << (i ? 1 : 0) << "}, \"synonyms\": [\"s" << i
         << "\"], \"description\": \"" << std::string(static_cast<size_t>(i % 97), 'd') << "\"}";
  json << "}";
  const std::string text = json.str();
  const size_t half = text.size() / 2;
  auto plain = ParseTermMap(text, "big.json");
  auto zst = ParseTermMap(Zstd(text.substr(0, half)) + Zstd(text.substr(half)), "big.json.zst");
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  ASSERT_TRUE(zst.ok()) << zst.status().message();
  EXPECT_EQ(plain->size(), 20000);
  EXPECT_EQ(plain->labels[12345], "term 12345");
  ExpectSameTerms(*plain, *zst);
  auto gz = ParseTermMap(Gzip(text.substr(0, half)) + Gzip(text.substr(half)), "big.json.gz");
  ASSERT_TRUE(gz.ok()) << gz.status().message();
  ExpectSameTerms(*plain, *gz);
}

// The error: one line, naming the file.
void ExpectError(const Result<TermMap>& r, StatusCode code, const std::string& file,
                 const std::string& says) {
  ASSERT_FALSE(r.ok()) << file;
  EXPECT_EQ(r.status().code(), code) << r.status().message();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  EXPECT_NE(msg.find(says), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST_F(OntologyFiles, BadInputsAreOneLineErrorsNamingTheFile) {
  const auto bad = StatusCode::kInvalidArgument;
  ExpectError(LoadTermMap(dir_ + "/none.json.zst"), StatusCode::kNotFound, "none.json.zst",
              "no such file");
  const std::string zst = Zstd(kSmall), gz = Gzip(kSmall);
  ExpectError(LoadTermMap(Write("cut.json.zst", zst.substr(0, zst.size() / 2))), bad,
              "cut.json.zst", "zstd data ends early");
  ExpectError(LoadTermMap(Write("cut.json.gz", gz.substr(0, gz.size() / 2))), bad, "cut.json.gz",
              "gzip data ends early");
  std::string damaged = gz;
  for (size_t i = 20; i < 40; ++i) damaged[i] = static_cast<char>(~damaged[i]);
  // Damage shows as bad compressed data, or as bad JSON when inflated garbage comes first.
  ExpectError(ParseTermMap(damaged, "damaged.gz"), bad, "damaged.gz", "not an ontology term map");
  std::string zdamaged = zst;
  for (size_t i = 4; i < 8; ++i) zdamaged[i] = '\xff';
  ExpectError(ParseTermMap(zdamaged, "damaged.zst"), bad, "damaged.zst", "zstd");
  // A real file cut short: the stream ends in the middle of a term.
  std::ifstream in(kDir + "/CL-ontology-v2026-03-26.json.zst", std::ios::binary);
  const std::string real{std::istreambuf_iterator<char>(in), {}};
  ExpectError(ParseTermMap(real.substr(0, real.size() / 3), "CL-cut.json.zst"), bad,
              "CL-cut.json.zst", "ends early");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"X:1": {"label": }})", "bad JSON at byte"},
      {R"({"X:1": {"label": "a"}} {})", "bad JSON"},
      {"", "bad JSON"},
      {"{}", "no terms"},
      {R"([{"label": "a"}])", "one JSON object of terms"},
      {R"({"X:1": "a"})", "term 'X:1' is not an object"},
      {R"({"X:1": {"label": "a"}, "X:2": {"synonyms": ["b"]}})", "term 'X:2' has no label"},
      {R"({"X:1": {"label": 3}})", "term 'X:1' has a label that is not a string"},
      {R"({"X:1": {"label": "a"}, "X:1": {"label": "b"}})", "term 'X:1' appears twice"},
      {R"({"X:1": {"label": "a", "ancestors": {"X:2": "1"}}})", "not a whole number"},
      {R"({"X:1": {"label": "a", "ancestors": {"X:2": -1}}})", "bad ancestor distance"},
      {R"({"X:1": {"label": "a", "ancestors": ["X:2"]}})", "'ancestors' that are not"},
      {R"({"X:1": {"label": "a", "synonyms": "b"}})", "'synonyms' that are not"},
      {R"({"X:1": {"label": "a", "synonyms": [1]}})", "synonym that is not a string"},
      {R"({"X:1": {"label": "a", "replaced_by": 2}})", "'replaced_by' that is not"},
      {R"({"X:1": {"label": "a", "deprecated": "yes"}})", "'deprecated' that is not"}};
  for (const auto& [json, says] : cases) {
    SCOPED_TRACE(json);
    ExpectError(LoadTermMap(Write("bad.json", json)), bad, dir_ + "/bad.json", says);
    ExpectError(ParseTermMap(Gzip(json), "bad.json.gz"), bad, "bad.json.gz", says);
  }
}

TEST_F(OntologyFiles, NameAndVersionFromTheFile) {
  const std::string one = R"({"B:1": {"label": "b"}, "A:1": {"label": "a"}})";
  const std::vector<std::pair<std::string, std::string>> names = {
      {"CL-ontology-v2026-03-26.json.zst", "v2026-03-26"},
      {"CL-ontology-v2026-03-26.subset.json.gz", "v2026-03-26"},
      {"x-v3.json", "v3"},
      {"cl.json", ""},
      {"my-vocabulary.json", ""},
      {"CL-ontology-v2026", ""}};
  for (const auto& [name, version] : names) {
    auto got = ParseTermMap(one, "/some/dir-v9.d/" + name);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(got->version, version) << name;
    EXPECT_EQ(got->name, "A");  // a tie between prefixes: the smaller, so it is stable
  }
}

// --- Binding columns -----------------------------------------------------------------

ColumnValues Column(std::vector<std::string> values, std::vector<std::string> ids = {}) {
  return {"col", std::move(values), std::move(ids)};
}

TEST(OntologyBind, HalfOfTheValuesAndAtLeastTwo) {
  const Matcher cl(Cl()), uberon(Uberon());
  const std::vector<const Matcher*> both = {&cl, &uberon};
  Binding b = BindColumn(both, Column({"T cell", "b cell", "doublet", "unknown"}));
  EXPECT_EQ(b.matcher, 0);
  EXPECT_EQ(b.matched, 2);
  ASSERT_EQ(b.matches.size(), 4u);
  EXPECT_EQ(b.matches[1].term, Cl().Find("CL:0000236"));
  EXPECT_EQ(b.matches[2].term, -1);
  // 2 of 5: less than half.
  b = BindColumn(both, Column({"T cell", "B cell", "a", "b", "c"}));
  EXPECT_EQ(b.matcher, -1);
  EXPECT_EQ(b.matched, 0);
  EXPECT_EQ(b.matches.size(), 5u);
  for (const Match& m : b.matches) EXPECT_EQ(m.term, -1);
  // 1 of 1 is all, but fewer than 2.
  EXPECT_EQ(BindColumn(both, Column({"T cell"})).matcher, -1);
  EXPECT_EQ(BindColumn(both, Column({})).matcher, -1);
  EXPECT_EQ(BindColumn({}, Column({"T cell", "B cell"})).matcher, -1);
}

TEST(OntologyBind, MostMatchesWinsAndTheFirstGivenOnATie) {
  const Matcher cl(Cl()), uberon(Uberon());
  const ColumnValues tie = Column({"T cell", "B cell", "lung", "heart"});
  EXPECT_EQ(BindColumn({&cl, &uberon}, tie).matcher, 0);
  EXPECT_EQ(BindColumn({&uberon, &cl}, tie).matcher, 0);
  EXPECT_EQ(BindColumn({&uberon, &cl}, tie).matches[0].term, -1);  // UBERON's view
  const ColumnValues tissues = Column({"T cell", "lung", "heart", "liver"});
  for (const auto& order : {std::vector<const Matcher*>{&cl, &uberon}, {&uberon, &cl}}) {
    const Binding b = BindColumn(order, tissues);
    ASSERT_GE(b.matcher, 0);
    EXPECT_EQ(order[static_cast<size_t>(b.matcher)], &uberon);
    EXPECT_EQ(b.matched, 3);
    EXPECT_EQ(b.matches[3].term, Uberon().Find("UBERON:0002107"));
  }
}

TEST(OntologyBind, PairIdsDecide) {
  const Matcher cl(Cl()), uberon(Uberon());
  // Values that match nothing by themselves: the ids decide, each value its id's term.
  Binding b = BindColumn({&uberon, &cl},
                         Column({"Tc", "Bc", "old", "lung?"},
                                {"CL:0000084", "CL:0000236", "CL:0000003", "UBERON:0002048"}));
  EXPECT_EQ(b.matcher, 1);
  EXPECT_EQ(b.matched, 3);
  EXPECT_EQ(b.matches[0].term, Cl().Find("CL:0000084"));
  EXPECT_EQ(b.matches[0].kind, MatchKind::kId);
  EXPECT_EQ(b.matches[2].kind, MatchKind::kReplaced);
  EXPECT_EQ(b.matches[2].term, Cl().Find("CL:0000000"));
  EXPECT_EQ(b.matches[3].term, -1);
  // The majority of ids wins even where the values are the other ontology's labels.
  b = BindColumn({&cl, &uberon}, Column({"T cell", "B cell", "lung"},
                                        {"UBERON:0000948", "UBERON:0002107", "UBERON:0002048"}));
  EXPECT_EQ(b.matcher, 1);
  EXPECT_EQ(b.matches[0].term, Uberon().Find("UBERON:0000948"));
  // One id is enough; a tie goes to the first given.
  EXPECT_EQ(BindColumn({&uberon, &cl}, Column({"a", "b"}, {"CL:0000084", "x"})).matcher, 1);
  EXPECT_EQ(
      BindColumn({&uberon, &cl}, Column({"a", "b"}, {"CL:0000084", "UBERON:0002048"})).matcher, 0);
  // No id known: not backed, even though the values would match by label.
  b = BindColumn({&cl}, Column({"T cell", "B cell"}, {"X:1", "NA"}));
  EXPECT_EQ(b.matcher, -1);
  EXPECT_EQ(b.matches.size(), 2u);
  // An "id" that is really a label does not count as the map's id.
  EXPECT_EQ(BindColumn({&cl}, Column({"a", "b"}, {"T cell", "B cell"})).matcher, -1);
}

// --- Embedding and uniting -----------------------------------------------------------

// The used terms and their ancestors, computed by following the maps to a fixed point.
std::set<std::string> Closure(const TermMap& m, const std::vector<std::string>& ids) {
  std::set<std::string> out(ids.begin(), ids.end());
  for (size_t before = 0; before != out.size();) {
    before = out.size();
    for (const std::string& id : std::set<std::string>(out))
      for (const auto& [a, d] : AncestorsOf(m, m.Find(id))) out.insert(a);
  }
  return out;
}

// Sizes, ascending ids, ascending ancestors, every term's ancestors as the map gives them.
void ExpectEmbeddedFaithfully(const StoreOntologies& o, const std::vector<const TermMap*>& maps) {
  ASSERT_TRUE(o.Validate().ok()) << o.Validate().message();
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    const auto i = static_cast<size_t>(t);
    if (t > 0) {
      ASSERT_LT(o.term_ids[i - 1], o.term_ids[i]);
    }
    for (int64_t k = o.ancestor_begin[i] + 1; k < o.ancestor_begin[i + 1]; ++k)
      ASSERT_LT(o.ancestors[static_cast<size_t>(k - 1)], o.ancestors[static_cast<size_t>(k)]);
    const std::string& name = o.ontologies[static_cast<size_t>(o.term_ontology[i])].name;
    const TermMap* m =
        *std::find_if(maps.begin(), maps.end(), [&](const TermMap* x) { return x->name == name; });
    const int32_t mt = m->Find(o.term_ids[i]);
    ASSERT_GE(mt, 0) << o.term_ids[i];
    EXPECT_EQ(o.term_labels[i], m->labels[static_cast<size_t>(mt)]);
    EXPECT_EQ(AncestorsOf(o, t), AncestorsOf(*m, mt)) << o.term_ids[i];
  }
}

std::vector<int32_t> Indices(const TermMap& m, const std::vector<std::string>& ids) {
  std::vector<int32_t> out;
  for (const auto& id : ids) out.push_back(m.Find(id));
  return out;
}

TEST(OntologyEmbed, UsedTermsAndAllTheirAncestors) {
  const std::vector<std::string> cells = {"CL:0000084", "CL:0000236", "CL:0000084", "CL:4042025"};
  const std::vector<std::string> tissues = {"UBERON:0002048"};
  const StoreOntologies o = Embed({{&Cl(), Indices(Cl(), cells), {"cell_type"}},
                                   {&Mondo(), {}, {}},  // nothing used: not embedded
                                   {&Uberon(), Indices(Uberon(), tissues), {"tissue"}}});
  ExpectEmbeddedFaithfully(o, {&Cl(), &Uberon()});
  ASSERT_EQ(o.ontologies.size(), 2u);
  EXPECT_EQ(o.ontologies[0].name, "CL");
  EXPECT_EQ(o.ontologies[0].version, "v2026-03-26");
  EXPECT_EQ(o.ontologies[1].name, "UBERON");
  EXPECT_EQ(o.columns, (std::vector<std::string>{"cell_type", "tissue"}));
  EXPECT_EQ(o.column_ontology, (std::vector<int32_t>{0, 1}));
  std::set<std::string> expected = Closure(Cl(), cells);
  const std::set<std::string> lung = Closure(Uberon(), tissues);
  expected.insert(lung.begin(), lung.end());
  EXPECT_EQ(std::set<std::string>(o.term_ids.begin(), o.term_ids.end()), expected);
  EXPECT_EQ(o.term_ids.size(), expected.size());
  for (int32_t t = 0; t < o.n_terms(); ++t)
    EXPECT_EQ(o.term_ontology[static_cast<size_t>(t)],
              o.term_ids[static_cast<size_t>(t)].starts_with("CL:") ? 0 : 1);
  // A column without terms still names its ontology.
  const StoreOntologies empty = Embed({{&Mondo(), {}, {"disease"}}});
  EXPECT_TRUE(empty.Validate().ok());
  EXPECT_EQ(empty.ontologies.size(), 1u);
  EXPECT_EQ(empty.n_terms(), 0);
  EXPECT_EQ(empty.columns, std::vector<std::string>{"disease"});
  EXPECT_TRUE(Embed({}).empty());
}

TEST(OntologyEmbed, AMapWhoseAncestorListsDoNotCloseUpStillEmbedsAClosedSet) {
  // c lists only b; b lists a: a is embedded with b, and c keeps its own list.
  auto m = ParseTermMap(R"({"X:a": {"label": "a"}, "X:b": {"label": "b", "ancestors":
      {"X:a": 1}}, "X:c": {"label": "c", "ancestors": {"X:b": 1}}})",
                        "X.json");
  ASSERT_TRUE(m.ok()) << m.status().message();
  const StoreOntologies o = Embed({{&*m, {m->Find("X:c")}, {"col"}}});
  ExpectEmbeddedFaithfully(o, {&*m});
  EXPECT_EQ(o.term_ids, (std::vector<std::string>{"X:a", "X:b", "X:c"}));
}

TEST(OntologyUnite, TermsByIdOntologiesByNameColumnsByName) {
  const StoreOntologies a = Embed({{&Cl(), Indices(Cl(), {"CL:0000084"}), {"cell_type"}}});
  // b lists UBERON first, so its ontology indices must be remapped.
  const StoreOntologies b =
      Embed({{&Uberon(), Indices(Uberon(), {"UBERON:0002048"}), {"tissue"}},
             {&Cl(), Indices(Cl(), {"CL:0000236", "CL:0000084"}), {"cell_type"}}});
  std::vector<std::string> notes;
  auto u = Unite(a, b, &notes);
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_TRUE(notes.empty());
  ExpectEmbeddedFaithfully(*u, {&Cl(), &Uberon()});
  ASSERT_EQ(u->ontologies.size(), 2u);
  EXPECT_EQ(u->ontologies[0].name, "CL");
  EXPECT_EQ(u->ontologies[1].name, "UBERON");
  EXPECT_EQ(u->columns, (std::vector<std::string>{"cell_type", "tissue"}));
  EXPECT_EQ(u->column_ontology, (std::vector<int32_t>{0, 1}));
  std::set<std::string> expected(a.term_ids.begin(), a.term_ids.end());
  expected.insert(b.term_ids.begin(), b.term_ids.end());
  EXPECT_EQ(std::set<std::string>(u->term_ids.begin(), u->term_ids.end()), expected);
  EXPECT_EQ(u->term_ids.size(), expected.size());
  // Uniting in the other order gives the same terms (ontology order aside).
  auto v = Unite(b, a, &notes);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->term_ids, u->term_ids);
  EXPECT_EQ(v->ontologies[0].name, "UBERON");
  // With itself: unchanged.
  auto same = Unite(*u, *u, &notes);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->term_ids, u->term_ids);
  EXPECT_EQ(same->ancestors, u->ancestors);
  EXPECT_EQ(same->ancestor_distance, u->ancestor_distance);
  EXPECT_TRUE(notes.empty());
}

TEST(OntologyUnite, VersionsDifferAndColumnConflicts) {
  const StoreOntologies a = Embed({{&Cl(), Indices(Cl(), {"CL:0000084"}), {"cell_type"}}});
  StoreOntologies older = a;
  older.ontologies[0].version = "v2025-01-01";
  std::vector<std::string> notes;
  auto u = Unite(a, older, &notes);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->ontologies[0].version, "v2026-03-26");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("v2025-01-01"), std::string::npos) << notes[0];
  // cell_type backed by CL in one store and by UBERON in the other.
  const StoreOntologies b =
      Embed({{&Uberon(), Indices(Uberon(), {"UBERON:0002048"}), {"cell_type"}}});
  auto bad = Unite(a, b, &notes);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'cell_type'"), std::string::npos)
      << bad.status().message();
  EXPECT_EQ(bad.status().message().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace cellcube::ontology
