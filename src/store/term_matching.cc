#include "store/term_matching.h"

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_map>

#include "ontology/embed.h"
#include "ontology/matcher.h"
#include "ontology/term_map.h"
#include "util/isolate.h"
#include "util/text.h"

namespace cellcube {
namespace {

// A store's embedded terms as term maps, one per ontology, for an add given no file:
// ids and labels only (synonyms and deprecated terms are not embedded).
std::vector<ontology::TermMap> MapsOfStore(const StoreOntologies& o) {
  std::vector<ontology::TermMap> maps(o.ontologies.size());
  std::vector<std::vector<int32_t>> index_in(o.ontologies.size());
  std::vector<int32_t> local(static_cast<size_t>(o.n_terms()), -1);
  for (size_t i = 0; i < maps.size(); ++i) {
    maps[i].name = o.ontologies[i].name;
    maps[i].version = o.ontologies[i].version;
    maps[i].source = "the store's embedded " + o.ontologies[i].name + " terms";
  }
  for (int32_t t = 0; t < o.n_terms(); ++t) {  // ascending ids: each map stays sorted
    auto& m = maps[static_cast<size_t>(o.term_ontology[static_cast<size_t>(t)])];
    local[static_cast<size_t>(t)] = m.size();
    m.ids.push_back(o.term_ids[static_cast<size_t>(t)]);
    m.labels.push_back(o.term_labels[static_cast<size_t>(t)]);
    m.deprecated.push_back(0);
    m.replaced_by.push_back(-1);
  }
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    auto& m = maps[static_cast<size_t>(o.term_ontology[static_cast<size_t>(t)])];
    for (int64_t k = o.ancestor_begin[static_cast<size_t>(t)];
         k < o.ancestor_begin[static_cast<size_t>(t) + 1]; ++k) {
      const int32_t a = o.ancestors[static_cast<size_t>(k)];
      if (o.term_ontology[static_cast<size_t>(a)] != o.term_ontology[static_cast<size_t>(t)])
        continue;
      m.ancestors.push_back(local[static_cast<size_t>(a)]);
      m.ancestor_distance.push_back(o.ancestor_distance[static_cast<size_t>(k)]);
    }
    m.ancestor_begin.push_back(static_cast<int64_t>(m.ancestors.size()));
  }
  for (auto& m : maps) m.synonym_begin.assign(m.ids.size() + 1, 0);  // no synonyms embedded
  return maps;
}

Result<std::vector<ontology::TermMap>> LoadFiles(const std::vector<OntologyFile>& files) {
  std::vector<ontology::TermMap> maps;
  for (const auto& f : files) {
    NoteActivity("reading the term map " + Quote(f.path));
    auto map =
        f.bytes.empty() ? ontology::LoadTermMap(f.path) : ontology::ParseTermMap(f.bytes, f.path);
    if (!map.ok()) return map.status();
    maps.push_back(std::move(map).value());
  }
  return maps;
}

// One store column across the datasets: its distinct values (first seen first) and,
// where some dataset pairs it with ids, each value's first id.
struct StoreColumn {
  ontology::ColumnValues values;
  std::unordered_map<std::string, size_t> index;
  bool paired = false;
};

std::map<std::string, StoreColumn> CollectColumns(const std::vector<DatasetPlan>& plans) {
  std::map<std::string, StoreColumn> out;
  for (const auto& plan : plans)
    for (const auto& col : plan.column_values) {
      StoreColumn& c = out[col.name];
      c.values.column = col.name;
      c.paired |= !col.pair_ids.empty();
      for (size_t v = 0; v < col.values.size(); ++v) {
        // A value is keyed by its pair's id too: one label may name two terms in two files.
        const std::string id = col.pair_ids.empty() ? "" : col.pair_ids[v];
        auto [it, fresh] = c.index.emplace(col.values[v] + '\x1f' + id, c.values.values.size());
        if (fresh) {
          c.values.values.push_back(col.values[v]);
          c.values.pair_ids.push_back(id);
        }
      }
    }
  for (auto& [name, c] : out)
    if (!c.paired) c.values.pair_ids.clear();
  return out;
}

const char* KindName(ontology::MatchKind k) {
  switch (k) {
    case ontology::MatchKind::kId:
      return "id";
    case ontology::MatchKind::kLabel:
      return "label";
    case ontology::MatchKind::kSynonym:
      return "synonym";
    case ontology::MatchKind::kReplaced:
      return "replaced deprecated id";
    case ontology::MatchKind::kNone:
      break;
  }
  return "none";
}

// "column 'cell_type': CL v2026-03-26 backs it: 45 of 47 values match (40 by label, 5 by
// synonym); 2 match nothing and stay plain values: 'doublet', 'unknown'".
std::string DescribeBinding(const ontology::TermMap& map, const ontology::ColumnValues& col,
                            const ontology::Binding& b) {
  std::map<std::string, int64_t> by_kind;
  std::vector<std::string> plain;
  for (size_t v = 0; v < b.matches.size(); ++v) {
    if (b.matches[v].term >= 0)
      ++by_kind[KindName(b.matches[v].kind)];
    else
      plain.push_back(col.values[v]);
  }
  std::string out =
      "column " + Quote(col.column) + ": " + map.name +
      (map.version.empty() ? "" : " " + map.version) + " backs it" +
      (col.pair_ids.empty() ? ""
                            : " (the ids of " + Quote(col.column + "_ontology_term_id") + ")") +
      ": " + std::to_string(b.matched) + " of " + std::to_string(col.values.size()) +
      " values match (";
  bool first = true;
  for (const auto& [kind, n] : by_kind) {
    out += (first ? "" : ", ") + std::to_string(n) + " by " + kind;
    first = false;
  }
  out += ")";
  if (!plain.empty()) {
    std::sort(plain.begin(), plain.end());
    out += "; " + std::to_string(plain.size()) +
           " match nothing and stay plain values: " + QuoteList(plain, 20);
  }
  return out;
}

void NoteReplacements(const ontology::TermMap& map, const ontology::ColumnValues& col,
                      const ontology::Binding& b, const BuildCallbacks& callbacks) {
  if (!callbacks.note) return;
  for (size_t v = 0; v < b.matches.size(); ++v) {
    const auto& m = b.matches[v];
    if (m.kind != ontology::MatchKind::kReplaced) continue;
    const std::string& old_id = map.ids[static_cast<size_t>(m.deprecated)];
    const std::string named = col.values[v] == old_id ? Quote(old_id) + " is deprecated"
                                                      : Quote(col.values[v]) + " names " +
                                                            Quote(old_id) + ", which is deprecated";
    callbacks.note("column " + Quote(col.column) + ": " + named + ": read as its replacement " +
                   Quote(map.ids[static_cast<size_t>(m.term)]) + " (" +
                   map.labels[static_cast<size_t>(m.term)] + ")");
  }
}

// Each plan's renames for one bound column: value -> its term's label.
void AddRenames(const StoreColumn& c, const ontology::TermMap& map, const ontology::Binding& b,
                std::vector<DatasetPlan>* plans) {
  for (auto& plan : *plans)
    for (size_t k = 0; k < plan.column_values.size(); ++k) {
      const auto& col = plan.column_values[k];
      if (col.name != c.values.column) continue;
      plan.renames.resize(plan.column_values.size());
      for (size_t v = 0; v < col.values.size(); ++v) {
        const std::string id = col.pair_ids.empty() ? "" : col.pair_ids[v];
        auto it = c.index.find(col.values[v] + '\x1f' + id);
        const auto& m = b.matches[it->second];
        if (m.term < 0) continue;
        const std::string& label = map.labels[static_cast<size_t>(m.term)];
        if (label != col.values[v]) plan.renames[k].emplace_back(col.values[v], label);
      }
    }
}

}  // namespace

Result<std::vector<ontology::TermMap>> LoadTermMaps(const std::vector<OntologyFile>& files,
                                                    const StoreOntologies& existing) {
  if (!files.empty()) return LoadFiles(files);
  return MapsOfStore(existing);
}

Result<StoreOntologies> MatchTerms(const std::vector<ontology::TermMap>& maps,
                                   const StoreOntologies& existing, const BuildCallbacks& callbacks,
                                   std::vector<DatasetPlan>* plans) {
  if (maps.empty()) return StoreOntologies();
  std::vector<std::unique_ptr<ontology::Matcher>> matchers;
  std::vector<const ontology::Matcher*> all;
  for (const auto& m : maps) {
    matchers.push_back(std::make_unique<ontology::Matcher>(m));
    all.push_back(matchers.back().get());
  }
  std::vector<ontology::UsedTerms> used(maps.size());
  for (size_t i = 0; i < maps.size(); ++i) used[i].map = &maps[i];
  for (const auto& [name, column] : CollectColumns(*plans)) {
    // A column the store already binds keeps its ontology (when a map of it is given).
    std::vector<const ontology::Matcher*> candidates = all;
    for (size_t k = 0; k < existing.columns.size(); ++k) {
      if (existing.columns[k] != name) continue;
      const std::string& bound =
          existing.ontologies[static_cast<size_t>(existing.column_ontology[k])].name;
      candidates.clear();
      for (const auto* m : all)
        if (m->map().name == bound) candidates.push_back(m);
    }
    ontology::Binding b = ontology::BindColumn(candidates, column.values);
    if (b.matcher < 0) continue;
    const ontology::Matcher* matcher = candidates[static_cast<size_t>(b.matcher)];
    // Values from files without the pair's id column match by themselves.
    for (size_t v = 0; v < column.values.pair_ids.size(); ++v)
      if (column.values.pair_ids[v].empty()) {
        b.matches[v] = matcher->Find(column.values.values[v]);
        b.matched += b.matches[v].term >= 0;
      }
    const auto mi = static_cast<size_t>(std::find(all.begin(), all.end(), matcher) - all.begin());
    const ontology::TermMap& map = maps[mi];
    if (callbacks.note) callbacks.note(DescribeBinding(map, column.values, b));
    NoteReplacements(map, column.values, b, callbacks);
    used[mi].columns.push_back(name);
    for (const auto& m : b.matches)
      if (m.term >= 0) used[mi].terms.push_back(m.term);
    AddRenames(column, map, b, plans);
  }
  return ontology::Embed(used);
}

}  // namespace cellcube
