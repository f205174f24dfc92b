// The embedded terms (docs/FORMAT.md "Ontology terms"): the used terms closed under their
// ancestor maps, laid out ascending by id; and the union of two stores' terms.
#include "ontology/embed.h"

#include <algorithm>
#include <map>

#include "ontology/ancestor_list.h"

namespace cellcube::ontology {
namespace {

// One term on its way into a StoreOntologies: its label, ontology and ancestors by id.
struct Entry {
  std::string label;
  int32_t ontology = 0;
  std::vector<std::pair<std::string, int32_t>> ancestors;  // (id, distance)
};

StoreOntologies Lay(std::vector<StoreOntologies::Source> ontologies,
                    const std::map<std::string, Entry>& terms,
                    std::vector<std::pair<std::string, int32_t>> columns) {
  StoreOntologies o;
  o.ontologies = std::move(ontologies);
  std::map<std::string, int32_t> index;
  for (const auto& [id, e] : terms) index.emplace(id, static_cast<int32_t>(index.size()));
  for (const auto& [id, e] : terms) {
    o.term_ids.push_back(id);
    o.term_labels.push_back(e.label);
    o.term_ontology.push_back(e.ontology);
    std::vector<std::pair<int32_t, int32_t>> anc;
    for (const auto& [a, d] : e.ancestors)
      if (auto it = index.find(a); it != index.end() && a != id) anc.emplace_back(it->second, d);
    AppendAncestors(std::move(anc), &o.ancestors, &o.ancestor_distance, &o.ancestor_begin);
  }
  for (auto& [name, ont] : columns) {
    o.columns.push_back(std::move(name));
    o.column_ontology.push_back(ont);
  }
  return o;
}

std::map<std::string, Entry> EntriesOf(const StoreOntologies& o,
                                       const std::vector<int32_t>& remap) {
  std::map<std::string, Entry> out;
  for (int32_t t = 0; t < o.n_terms(); ++t) {
    const auto i = static_cast<size_t>(t);
    Entry e{o.term_labels[i], remap[static_cast<size_t>(o.term_ontology[i])], {}};
    for (int64_t k = o.ancestor_begin[i]; k < o.ancestor_begin[i + 1]; ++k)
      e.ancestors.emplace_back(o.term_ids[static_cast<size_t>(o.ancestors[static_cast<size_t>(k)])],
                               o.ancestor_distance[static_cast<size_t>(k)]);
    out.emplace(o.term_ids[i], std::move(e));
  }
  return out;
}

// `used` and every ancestor of theirs, following the ancestor maps transitively: the
// published maps are closed (an ancestor's ancestors are the term's too), but a map that
// is not still embeds a closed set, each term with its whole ancestor list.
std::vector<int32_t> WithAncestors(const TermMap& m, const std::vector<int32_t>& used) {
  std::vector<uint8_t> seen(static_cast<size_t>(m.size()), 0);
  std::vector<int32_t> out;
  for (int32_t t : used)
    if (!seen[static_cast<size_t>(t)]) {
      seen[static_cast<size_t>(t)] = 1;
      out.push_back(t);
    }
  for (size_t next = 0; next < out.size(); ++next) {
    const auto i = static_cast<size_t>(out[next]);
    for (int64_t k = m.ancestor_begin[i]; k < m.ancestor_begin[i + 1]; ++k) {
      const int32_t a = m.ancestors[static_cast<size_t>(k)];
      if (seen[static_cast<size_t>(a)]) continue;
      seen[static_cast<size_t>(a)] = 1;
      out.push_back(a);
    }
  }
  return out;
}

}  // namespace

StoreOntologies Embed(const std::vector<UsedTerms>& used) {
  std::vector<StoreOntologies::Source> ontologies;
  std::map<std::string, Entry> terms;
  std::vector<std::pair<std::string, int32_t>> columns;
  for (const UsedTerms& u : used) {
    if (u.columns.empty() && u.terms.empty()) continue;
    const auto ont = static_cast<int32_t>(ontologies.size());
    ontologies.push_back({u.map->name, u.map->version});
    for (const auto& c : u.columns) columns.emplace_back(c, ont);
    const TermMap& m = *u.map;
    auto add = [&](int32_t t) {
      const auto i = static_cast<size_t>(t);
      auto [it, fresh] = terms.emplace(m.ids[i], Entry{m.labels[i], ont, {}});
      if (!fresh) return;
      for (int64_t k = m.ancestor_begin[i]; k < m.ancestor_begin[i + 1]; ++k)
        it->second.ancestors.emplace_back(
            m.ids[static_cast<size_t>(m.ancestors[static_cast<size_t>(k)])],
            m.ancestor_distance[static_cast<size_t>(k)]);
    };
    for (int32_t t : WithAncestors(m, u.terms)) add(t);
  }
  return Lay(std::move(ontologies), terms, std::move(columns));
}

Result<StoreOntologies> Unite(const StoreOntologies& a, const StoreOntologies& b,
                              std::vector<std::string>* notes) {
  std::vector<StoreOntologies::Source> ontologies = a.ontologies;
  std::vector<int32_t> identity(a.ontologies.size()), remap_b;
  for (size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<int32_t>(i);
  for (const auto& source : b.ontologies) {
    auto it = std::find_if(ontologies.begin(), ontologies.end(),
                           [&](const auto& x) { return x.name == source.name; });
    if (it == ontologies.end()) {
      remap_b.push_back(static_cast<int32_t>(ontologies.size()));
      ontologies.push_back(source);
      continue;
    }
    remap_b.push_back(static_cast<int32_t>(it - ontologies.begin()));
    if (it->version != source.version && notes)
      notes->push_back("the stores embed " + source.name + " terms of two versions (" +
                       (it->version.empty() ? "unknown" : it->version) + " and " +
                       (source.version.empty() ? "unknown" : source.version) +
                       "): the first's labels and ancestors are kept where they differ");
  }
  std::map<std::string, Entry> terms = EntriesOf(a, identity);
  for (auto& [id, e] : EntriesOf(b, remap_b)) terms.emplace(id, std::move(e));
  std::vector<std::pair<std::string, int32_t>> columns;
  for (size_t k = 0; k < a.columns.size(); ++k)
    columns.emplace_back(a.columns[k], a.column_ontology[k]);
  for (size_t k = 0; k < b.columns.size(); ++k) {
    const int32_t ont = remap_b[static_cast<size_t>(b.column_ontology[k])];
    auto it = std::find_if(columns.begin(), columns.end(),
                           [&](const auto& c) { return c.first == b.columns[k]; });
    if (it == columns.end()) {
      columns.emplace_back(b.columns[k], ont);
    } else if (it->second != ont) {
      return Status::InvalidArgument(
          "column '" + b.columns[k] + "' is backed by " +
          ontologies[static_cast<size_t>(it->second)].name + " in one store and by " +
          ontologies[static_cast<size_t>(ont)].name +
          " in another; a column binds to one ontology (rename the column in one of them)");
    }
  }
  return Lay(std::move(ontologies), terms, std::move(columns));
}

}  // namespace cellcube::ontology
