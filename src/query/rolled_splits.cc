#include "query/rolled_splits.h"

#include <algorithm>
#include <utility>

namespace cellcube::query {
namespace {

// One by-column's output rows and, per label code + 1 (0 = NA), the rows it counts in.
struct ColumnRows {
  std::vector<std::string> label, term_id;
  std::vector<int32_t> depth;
  std::vector<std::vector<int32_t>> of_code;
};

ColumnRows RowsOf(const StoreData& m, const Terms& terms, int32_t column, bool rolled,
                  const std::vector<int32_t>& selected) {
  const auto c = static_cast<size_t>(column);
  const auto& codes = m.codes[c];
  ColumnRows out;
  out.of_code.resize(m.labels[c].size() + 1);
  std::vector<uint8_t> present(m.labels[c].size() + 1, 0);
  for (int32_t g : selected) present[static_cast<size_t>(codes[static_cast<size_t>(g)] + 1)] = 1;
  auto add_row = [&](const std::string& label, const std::string& id, int32_t depth) {
    out.label.push_back(label);
    out.term_id.push_back(id);
    out.depth.push_back(depth);
    return static_cast<int32_t>(out.label.size() - 1);
  };
  if (rolled) {
    const Terms::Rolled r = terms.Roll(m, column, selected);
    const StoreOntologies& o = m.ontology;
    std::vector<std::pair<int32_t, int32_t>> row_of_term;  // (shown term, its row), sorted
    for (size_t i = 0; i < r.shown.terms.size(); ++i) {
      const int32_t t = r.shown.terms[i];
      row_of_term.emplace_back(t, add_row(o.term_labels[static_cast<size_t>(t)],
                                          o.term_ids[static_cast<size_t>(t)], r.shown.depth[i]));
    }
    std::sort(row_of_term.begin(), row_of_term.end());
    auto count_in = [&](size_t code, int32_t t) {
      auto it = std::lower_bound(row_of_term.begin(), row_of_term.end(), std::make_pair(t, -1));
      if (it != row_of_term.end() && it->first == t) out.of_code[code + 1].push_back(it->second);
    };
    // A term-valued label counts in its own term's row and each shown ancestor's.
    for (size_t l = 0; l < m.labels[c].size(); ++l) {
      const int32_t own = terms.value_term[c][l];
      if (!present[l + 1] || own < 0) continue;
      count_in(l, own);
      for (int64_t k = o.ancestor_begin[static_cast<size_t>(own)];
           k < o.ancestor_begin[static_cast<size_t>(own) + 1]; ++k)
        count_in(l, o.ancestors[static_cast<size_t>(k)]);
    }
    for (int32_t code : r.plain)
      out.of_code[static_cast<size_t>(code) + 1].push_back(
          add_row(m.labels[c][static_cast<size_t>(code)], "", 0));
  } else {
    for (size_t l = 0; l < m.labels[c].size(); ++l)
      if (present[l + 1])
        out.of_code[l + 1].push_back(
            add_row(m.labels[c][l], terms.IdOf(m, column, static_cast<int32_t>(l)), 0));
  }
  if (present[0]) out.of_code[0].push_back(add_row("NA", "", 0));
  return out;
}

}  // namespace

RolledSplits PlanRolledSplits(const StoreData& m, const Terms& terms,
                              const std::vector<int32_t>& by, const std::vector<uint8_t>& rolled,
                              const std::vector<int32_t>& selected,
                              const std::vector<int32_t>& base_of_selected,
                              const std::vector<int32_t>& representative, bool with_pairs) {
  std::vector<ColumnRows> columns;
  for (size_t k = 0; k < by.size(); ++k)
    columns.push_back(RowsOf(m, terms, by[k], rolled[k] != 0, selected));
  // (output key, base split): the key is mixed radix over the columns' row numbers, the
  // first by-column varying slowest, as plain splits are ordered.
  std::vector<std::pair<uint64_t, int32_t>> pairs;
  std::vector<uint64_t> keys, next;
  for (size_t b = 0; b < representative.size(); ++b) {
    keys.assign(1, 0);
    for (size_t k = 0; k < by.size(); ++k) {
      const int32_t code =
          m.codes[static_cast<size_t>(by[k])][static_cast<size_t>(representative[b])];
      const auto& rows = columns[k].of_code[static_cast<size_t>(code + 1)];
      const uint64_t radix = columns[k].label.size();
      next.clear();
      for (uint64_t key : keys)
        for (int32_t row : rows) next.push_back(key * radix + static_cast<uint64_t>(row));
      keys.swap(next);
    }
    for (uint64_t key : keys) pairs.emplace_back(key, static_cast<int32_t>(b));
  }
  std::sort(pairs.begin(), pairs.end());
  RolledSplits out;
  std::vector<std::vector<int32_t>> outs_of_base(representative.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i == 0 || pairs[i].first != pairs[i - 1].first) {
      out.begin.push_back(static_cast<int64_t>(out.base.size()));
      // Decode the key into each column's row.
      std::vector<int32_t> row(by.size());
      uint64_t key = pairs[i].first;
      for (size_t k = by.size(); k-- > 0;) {
        const uint64_t radix = columns[k].label.size();
        row[k] = static_cast<int32_t>(key % radix);
        key /= radix;
      }
      for (size_t k = 0; k < by.size(); ++k) {
        const auto r = static_cast<size_t>(row[k]);
        out.labels.push_back(columns[k].label[r]);
        out.term_ids.push_back(columns[k].term_id[r]);
        if (rolled[k]) out.depth.push_back(columns[k].depth[r]);
      }
    }
    out.base.push_back(pairs[i].second);
    outs_of_base[static_cast<size_t>(pairs[i].second)].push_back(
        static_cast<int32_t>(out.begin.size() - 1));
  }
  out.n_out = static_cast<int64_t>(out.begin.size());
  out.begin.push_back(static_cast<int64_t>(out.base.size()));
  for (size_t i = 0; with_pairs && i < selected.size(); ++i)
    for (int32_t o : outs_of_base[static_cast<size_t>(base_of_selected[i])]) {
      out.groups.push_back(selected[i]);
      out.splits.push_back(o);
    }
  return out;
}

void CombineSplits(const RolledSplits& r, size_t n_genes, const std::vector<Aggregate>& base,
                   const std::vector<Bins>* base_bins, bool m2, std::vector<Aggregate>* out,
                   std::vector<Bins>* out_bins) {
  out->assign(static_cast<size_t>(r.n_out) * n_genes, Aggregate());
  if (out_bins) out_bins->assign(static_cast<size_t>(r.n_out) * n_genes, Bins{});
  for (int64_t o = 0; o < r.n_out; ++o)
    for (int64_t k = r.begin[static_cast<size_t>(o)]; k < r.begin[static_cast<size_t>(o) + 1];
         ++k) {
      const auto b = static_cast<size_t>(r.base[static_cast<size_t>(k)]);
      for (size_t g = 0; g < n_genes; ++g) {
        const Aggregate& x = base[b * n_genes + g];
        if (x.n_cells == 0) continue;
        Aggregate& to = (*out)[static_cast<size_t>(o) * n_genes + g];
        if (m2 && to.n_cells > 0) {
          // Chan et al.: the squared difference of the means, weighted n_a·n_b/(n_a+n_b).
          const auto na = static_cast<double>(to.n_cells), nb = static_cast<double>(x.n_cells);
          const double delta = x.sum / nb - to.sum / na;
          to.m2 += x.m2 + delta * delta * na * nb / (na + nb);
        } else if (m2) {
          to.m2 = x.m2;
        }
        to.n_cells += x.n_cells;
        to.nnz += x.nnz;
        to.sum += x.sum;
        if (out_bins) {
          Bins& bins = (*out_bins)[static_cast<size_t>(o) * n_genes + g];
          const Bins& from = (*base_bins)[b * n_genes + g];
          for (size_t i = 0; i < bins.size(); ++i) bins[i] += from[i];
        }
      }
    }
}

}  // namespace cellcube::query
