// cellcube._cellcube: the query engine for Python (pybind11). The package's
// __init__.py wraps it into cellcube.open(path) -> Store with .query() returning a
// pandas DataFrame; this layer returns plain columns (lists and numpy arrays).
//
// Errors: a missing store raises FileNotFoundError, every other error ValueError
// (OSError for an I/O failure), with the same one-line message as the CLI.
// Threads: queries release the GIL; a Store may be shared between threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cellcube/de.h"
#include "cellcube/query.h"
#include "cellcube/render.h"
#include "histogram/histogram.h"

namespace py = pybind11;

namespace cellcube {
namespace {

[[noreturn]] void Raise(const Status& s) {
  PyObject* type = PyExc_ValueError;
  if (s.code() == StatusCode::kIoError) type = PyExc_OSError;
  if (s.code() == StatusCode::kOutOfMemory) type = PyExc_MemoryError;
  PyErr_SetString(type, s.message().c_str());
  throw py::error_already_set();
}

using WhereList = std::vector<std::pair<std::string, std::vector<std::string>>>;

// The population of every call: cellcube/__init__.py has made `where` a list of
// (column, labels) and `datasets` a list of names.
Population MakePopulation(const WhereList& where, const std::vector<std::string>& datasets,
                          const std::vector<std::string>& rollup) {
  Population p;
  for (const auto& [column, values] : where) p.where.push_back({column, values});
  p.datasets = datasets;
  p.rollup = rollup;
  return p;
}

Query MakeQuery(const std::vector<std::string>& genes, const std::vector<std::string>& by,
                const WhereList& where, const std::vector<std::string>& datasets,
                const std::vector<std::string>& metrics, const std::vector<std::string>& rollup) {
  Query q;
  q.genes = genes;
  q.by = by;
  q.population = MakePopulation(where, datasets, rollup);
  q.metrics = metrics;
  return q;
}

class PyStore {
  // make()'s value, computed without the GIL; its error raised.
  template <typename F>
  static auto Released(F&& make) {
    auto r = [&] {
      py::gil_scoped_release release;
      return make();
    }();
    if (!r.ok()) Raise(r.status());
    return std::move(r).value();
  }

  // A DE (or markers) answer as columns for a DataFrame, in DeColumnNames() order after
  // the markers' values (`lead`): text as lists of str; the counts as (int64 values, bool
  // missing) pairs, missing where the CSV is empty (no donors: -1); the rest float64,
  // NaN where the CSV is empty. The same values as the CSV, without printing and
  // parsing 24,000 rows of text.
  static py::list DeColumns(const DeResult& r, const std::vector<std::string>* lead) {
    const auto n = static_cast<py::ssize_t>(r.rows.size());
    py::list columns;
    auto text = [&](const std::vector<std::string>& values) {
      py::list col(n);
      for (py::ssize_t i = 0; i < n; ++i)
        col[static_cast<size_t>(i)] = py::str(values[static_cast<size_t>(i)]);
      columns.append(col);
    };
    if (lead) text(*lead);
    text(r.gene_ids);
    text(r.symbols);
    for (int64_t DeRow::*field :
         {&DeRow::n_cells1, &DeRow::n_cells2, &DeRow::n_donors1, &DeRow::n_donors2}) {
      py::array_t<int64_t> values(n);
      py::array_t<bool> missing(n);
      auto* v = values.mutable_data();
      auto* m = missing.mutable_data();
      for (py::ssize_t i = 0; i < n; ++i) {
        const int64_t x = r.rows[static_cast<size_t>(i)].*field;
        m[i] = x < 0;
        v[i] = x < 0 ? 0 : x;
      }
      columns.append(py::make_tuple(values, missing));
    }
    for (double DeRow::*field :
         {&DeRow::mean1, &DeRow::mean2, &DeRow::frac1, &DeRow::frac2, &DeRow::logfc, &DeRow::effect,
          &DeRow::t, &DeRow::df, &DeRow::pvalue, &DeRow::padj}) {
      py::array_t<double> values(n);
      auto* v = values.mutable_data();
      for (py::ssize_t i = 0; i < n; ++i) {
        const double x = r.rows[static_cast<size_t>(i)].*field;
        v[i] = std::isfinite(x) ? x : std::nan("");
      }
      columns.append(values);
    }
    return columns;
  }

 public:
  explicit PyStore(std::shared_ptr<const QueryEngine> engine) : engine_(std::move(engine)) {}

  static std::shared_ptr<PyStore> Open(const std::string& path, bool preload) {
    Result<std::shared_ptr<const QueryEngine>> engine = [&] {
      py::gil_scoped_release release;
      // Isolated: libhdf5 crashing on a damaged file must not take the interpreter down.
      StoreOpenOptions options;
      options.isolate = true;
      options.preload = preload;
      return QueryEngine::Open(path, options);
    }();
    if (!engine.ok()) {
      const Status& s = engine.status();
      if (s.code() == StatusCode::kNotFound) {
        PyErr_SetString(PyExc_FileNotFoundError, s.message().c_str());
        throw py::error_already_set();
      }
      Raise(s);
    }
    return std::make_shared<PyStore>(std::move(engine).value());
  }

  const std::string& path() const { return meta_store().path(); }
  std::vector<std::string> datasets() const { return meta().labels[0]; }
  std::vector<std::string> columns() const { return meta().columns; }
  std::vector<std::string> gene_ids() const { return meta_store().gene_ids().ToVector(); }
  std::vector<std::string> gene_symbols() const { return meta_store().gene_symbols().ToVector(); }
  int64_t n_groups() const { return meta_store().n_groups(); }
  int64_t n_entries() const { return meta_store().n_entries(); }
  // What open(..., preload=True) did: (done, bytes, bytes on 2 MB pages, why not).
  py::tuple preload() const {
    const PreloadReport& r = meta_store().preload();
    return py::make_tuple(r.done, r.bytes, r.huge_bytes, r.why_not);
  }

  std::vector<std::string> values(const std::string& column) const {
    auto c = engine_->ColumnIndex(column);
    if (!c.ok()) Raise(c.status());
    return engine_->ColumnValues(*c);
  }

  // Returns (column names, list of columns, notes): labels and genes as lists of str,
  // n_cells/nnz as int64 arrays, other metrics as float64 arrays (NaN = missing).
  py::tuple query(const std::vector<std::string>& genes, const std::vector<std::string>& by,
                  const WhereList& where, const std::vector<std::string>& datasets,
                  const std::vector<std::string>& metrics,
                  const std::vector<std::string>& rollup) const {
    const Query q = MakeQuery(genes, by, where, datasets, metrics, rollup);
    Result<QueryResult> r = [&] {
      py::gil_scoped_release release;
      return engine_->Run(q);
    }();
    if (!r.ok()) Raise(r.status());
    const QueryResult& res = *r;
    const auto n = static_cast<py::ssize_t>(res.rows.size());
    py::list names;
    py::list columns;
    for (const auto& name : res.ColumnNames()) names.append(name);
    // Label columns share one str object per distinct label.
    // Per backed by-column, each label's term id (docs/ONTOLOGY.md).
    py::dict term_ids;
    for (size_t c = 0; c < res.by.size(); ++c) {
      std::vector<py::str> per_split;
      py::dict ids;
      for (int64_t s = 0; s < res.n_splits; ++s) {
        const auto k = static_cast<size_t>(s) * res.by.size() + c;
        per_split.emplace_back(res.split_labels[k]);
        if (res.by_backed[c] && !res.split_terms[k].empty())
          ids[py::str(res.split_labels[k])] = res.split_terms[k];
      }
      if (res.by_backed[c]) term_ids[py::str(res.by[c])] = ids;
      py::list col(n);
      for (py::ssize_t i = 0; i < n; ++i)
        col[static_cast<size_t>(i)] = per_split[static_cast<size_t>(res.rows[i].split)];
      columns.append(col);
      if (!res.by_rolled[c]) continue;
      py::array_t<int64_t> depth(n);
      auto* p = depth.mutable_data();
      for (py::ssize_t i = 0; i < n; ++i) p[i] = res.Depth(res.rows[i].split, c);
      columns.append(depth);
    }
    {
      std::vector<py::str> per_gene(res.genes.begin(), res.genes.end());
      py::list col(n);
      for (py::ssize_t i = 0; i < n; ++i)
        col[static_cast<size_t>(i)] = per_gene[static_cast<size_t>(res.rows[i].gene)];
      columns.append(col);
    }
    for (Metric m : res.metrics) {
      if (MetricIsInteger(m)) {
        py::array_t<int64_t> a(n);
        auto* p = a.mutable_data();
        for (py::ssize_t i = 0; i < n; ++i)
          p[i] = m == Metric::kNCells ? res.rows[i].stats.n_cells : res.rows[i].stats.nnz;
        columns.append(a);
      } else {
        py::array_t<double> a(n);
        auto* p = a.mutable_data();
        for (py::ssize_t i = 0; i < n; ++i) p[i] = res.Value(static_cast<size_t>(i), m);
        columns.append(a);
      }
    }
    return py::make_tuple(names, columns, res.notes, term_ids);
  }

  // The same query rendered as CSV or JSON text (what the CLI prints).
  std::string query_text(const std::vector<std::string>& genes, const std::vector<std::string>& by,
                         const WhereList& where, const std::vector<std::string>& datasets,
                         const std::vector<std::string>& metrics, const std::string& format,
                         const std::vector<std::string>& rollup) const {
    if (format != "csv" && format != "json")
      Raise(Status::InvalidArgument("format must be 'csv' or 'json', not '" + format + "'"));
    const Query q = MakeQuery(genes, by, where, datasets, metrics, rollup);
    Result<std::string> text = [&]() -> Result<std::string> {
      py::gil_scoped_release release;
      CC_ASSIGN_OR_RETURN(QueryResult r, engine_->Run(q));
      return format == "csv" ? FormatCsv(r) : FormatJson(r);
    }();
    if (!text.ok()) Raise(text.status());
    return std::move(text).value();
  }
  // A distribution answer (docs/QUERY.md) as (CSV text, notes, edges): what
  // `cellcube distribution --format csv` prints, and the 65 bin edges.
  py::tuple distribution_text(const std::vector<std::string>& genes,
                              const std::vector<std::string>& by, const WhereList& where,
                              const std::vector<std::string>& datasets,
                              const std::vector<std::string>& rollup) const {
    Query q = MakeQuery(genes, by, where, datasets, {"n_cells"}, rollup);
    q.distribution = true;
    Result<QueryResult> r = [&] {
      py::gil_scoped_release release;
      return engine_->Run(q);
    }();
    if (!r.ok()) Raise(r.status());
    std::vector<double> edges;
    const histogram::Layout layout(r->hist_max);
    for (int i = 0; i <= histogram::kBins; ++i) edges.push_back(layout.Edge(i));
    return py::make_tuple(FormatDistributionCsv(*r), r->notes, edges);
  }

  // Differential expression (docs/DE.md) as (CSV or JSON text, notes, test): what
  // `cellcube de` prints on stdout and stderr, and the test that ran.
  py::tuple de_text(const std::string& compare, const std::vector<std::string>& group1,
                    const std::vector<std::string>& group2, const WhereList& where,
                    const std::vector<std::string>& datasets, const std::string& test,
                    const std::string& donor, int64_t min_cells, double min_frac,
                    const std::string& direction, int64_t top, const std::string& format,
                    const std::vector<std::string>& rollup) const {
    DeOptions o;
    o.compare = compare;
    o.group1 = group1;
    o.group2 = group2;
    o.population = MakePopulation(where, datasets, rollup);
    o.testing = {test, donor, min_cells, OptionNames::kParameters};
    o.min_frac = min_frac;
    o.direction = direction;
    o.top = top;
    if (format == "columns") {
      const DeResult r = Released([&] { return RunDe(*engine_, o); });
      return py::make_tuple(DeColumnNames(), DeColumns(r, nullptr), r.notes, r.test);
    }
    return Text(
        [&]() -> Result<TextAndNotes> {
          CC_ASSIGN_OR_RETURN(DeResult r, RunDe(*engine_, o));
          return TextAndNotes{format == "csv" ? FormatDeCsv(r) : FormatDeJson(r, 0), r.notes,
                              r.test};
        },
        format);
  }

  // Marker genes (docs/DE.md) as (CSV or JSON text, notes, test): what `cellcube markers`
  // prints, and the test that ran.
  py::tuple markers_text(const std::string& column, const WhereList& where,
                         const std::vector<std::string>& datasets, int64_t top, double max_padj,
                         const std::string& test, const std::string& donor, int64_t min_cells,
                         const std::string& format, const std::vector<std::string>& rollup,
                         const std::string& direction, double min_frac) const {
    MarkersOptions o;
    o.column = column;
    o.population = MakePopulation(where, datasets, rollup);
    o.testing = {test, donor, min_cells, OptionNames::kParameters};
    o.top = top;
    o.max_padj = max_padj;
    o.direction = direction;
    o.min_frac = min_frac;
    if (format == "columns") {
      const MarkersResult r = Released([&] { return RunMarkers(*engine_, o); });
      std::vector<std::string> names = {column};
      names.insert(names.end(), DeColumnNames().begin(), DeColumnNames().end());
      return py::make_tuple(names, DeColumns(r.de, &r.values), r.de.notes, r.de.test);
    }
    return Text(
        [&]() -> Result<TextAndNotes> {
          CC_ASSIGN_OR_RETURN(MarkersResult r, RunMarkers(*engine_, o));
          return TextAndNotes{format == "csv" ? FormatMarkersCsv(r) : FormatMarkersJson(r, 0),
                              r.de.notes, r.de.test};
        },
        format);
  }

 private:
  struct TextAndNotes {
    std::string text;
    std::vector<std::string> notes;
    std::string test;  // which test ran ("cells", "donors-paired", ...; markers: or "mixed")
  };
  template <typename F>
  static py::tuple Text(F&& make, const std::string& format) {
    if (format != "csv" && format != "json")
      Raise(Status::InvalidArgument("format must be 'csv' or 'json', not '" + format + "'"));
    const TextAndNotes out = Released(std::forward<F>(make));
    return py::make_tuple(out.text, out.notes, out.test);
  }
  const StoreReader& meta_store() const { return engine_->store(); }
  const StoreData& meta() const { return engine_->store().meta(); }
  std::shared_ptr<const QueryEngine> engine_;
};

}  // namespace
}  // namespace cellcube

PYBIND11_MODULE(_cellcube, m) {
  using cellcube::PyStore;
  m.doc() = "cellcube's query engine (use the cellcube package, not this module)";
  py::class_<PyStore, std::shared_ptr<PyStore>>(m, "Store")
      .def_property_readonly("path", &PyStore::path)
      .def_property_readonly("datasets", &PyStore::datasets)
      .def_property_readonly("columns", &PyStore::columns)
      .def_property_readonly("gene_ids", &PyStore::gene_ids)
      .def_property_readonly("gene_symbols", &PyStore::gene_symbols)
      .def_property_readonly("n_groups", &PyStore::n_groups)
      .def_property_readonly("n_entries", &PyStore::n_entries)
      .def_property_readonly("preload", &PyStore::preload)
      .def("values", &PyStore::values, py::arg("column"))
      .def("query", &PyStore::query, py::arg("genes"), py::arg("by"), py::arg("where"),
           py::arg("datasets"), py::arg("metrics"), py::arg("rollup") = std::vector<std::string>())
      .def("query_text", &PyStore::query_text, py::arg("genes"), py::arg("by"), py::arg("where"),
           py::arg("datasets"), py::arg("metrics"), py::arg("format"),
           py::arg("rollup") = std::vector<std::string>())
      .def("distribution_text", &PyStore::distribution_text, py::arg("genes"), py::arg("by"),
           py::arg("where"), py::arg("datasets"), py::arg("rollup") = std::vector<std::string>())
      .def("de_text", &PyStore::de_text, py::arg("compare"), py::arg("group1"), py::arg("group2"),
           py::arg("where"), py::arg("datasets"), py::arg("test"), py::arg("donor"),
           py::arg("min_cells"), py::arg("min_frac"), py::arg("direction"), py::arg("top"),
           py::arg("format"), py::arg("rollup") = std::vector<std::string>())
      .def("markers_text", &PyStore::markers_text, py::arg("column"), py::arg("where"),
           py::arg("datasets"), py::arg("top"), py::arg("max_padj"), py::arg("test"),
           py::arg("donor"), py::arg("min_cells"), py::arg("format"),
           py::arg("rollup") = std::vector<std::string>(), py::arg("direction") = "up",
           py::arg("min_frac") = 0.0);
  m.def("open", &PyStore::Open, py::arg("path"), py::arg("preload") = false);
  py::list metrics;
  for (cellcube::Metric x : cellcube::AllMetrics()) metrics.append(cellcube::MetricName(x));
  m.attr("METRICS") = metrics;
}
