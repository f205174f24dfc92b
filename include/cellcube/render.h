// Answers as text: a query's rows (CSV, JSON objects, the web page's compact arrays) and
// DE and markers tables (CSV, JSON). The one renderer of answers, so the CLI's
// --format csv|json, the HTTP API's bodies and the Python module's *_text give the same
// bytes for the same answer (docs/QUERY.md, docs/DE.md, docs/API.md).
//
// Values: a query metric is always QueryResult::Row::Value, so mean_expr is missing in
// the rows that hold scaled data. Integers (n_cells, nnz, counts of cells and donors) are
// plain; other numbers take their shortest round-trip digits as float64 (float32 in the
// compact layout). A missing value is an empty CSV field or JSON null. CSV: RFC 4180
// quoting, "\n" line ends, a header line of the column names.
//
// Thread safety: pure functions of their arguments, callable from any thread.
// Errors: none; every answer renders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/de.h"
#include "cellcube/query.h"

namespace cellcube {

// ---- queries ----

// CSV: header = ColumnNames(); one line per row, labels and gene as text.
std::string FormatCsv(const QueryResult& result);
// JSON: an array with one object per row, keys = ColumnNames() in order, labels and
// gene as strings, n_cells/nnz as integers, other metrics as numbers, null = missing.
std::string FormatJson(const QueryResult& result);

// How the rows of a JSON answer are laid out (docs/API.md, /api/v1/query).
enum class RowLayout {
  kObjects,  // "rows": FormatJson's array
  // "splits": each split's labels once; "rows": [split, gene, metrics...] arrays, split
  // and gene indexing "splits" and the result's genes (a third of the bytes).
  kCompact,
};
// Appends the members of a JSON object that carry the rows in `layout` ("splits" too
// when compact), with no braces and no comma before or after: the caller's envelope
// holds them.
void AppendJsonRows(const QueryResult& result, RowLayout layout, std::string* out);

// ---- distributions (a QueryResult run with Query::distribution) ----

// The columns before the bins: the by-columns, "gene", "n_cells", "zeros".
std::vector<std::string> DistributionColumns(const QueryResult& result);
// CSV: those columns, then bin_00 ... bin_63; a row holding negative values has empty
// zeros and bins.
std::string FormatDistributionCsv(const QueryResult& result);
// The members "columns", "edges" (65 numbers: bin i covers (edges[i], edges[i + 1]]) and
// "rows" (objects: the by-columns, "gene", "n_cells", "zeros", "bins": [64 counts]; zeros
// and bins null where the row holds negative values), with no braces (the caller's
// envelope holds them).
void AppendDistributionJson(const QueryResult& result, std::string* out);
// {columns, edges, rows, notes}: the CLI's JSON.
std::string FormatDistributionJson(const QueryResult& result);

// ---- DE and markers (docs/DE.md) ----

// CSV: header = DeColumnNames(). JSON: {"columns", "rows" (objects keyed by the
// columns), "test", "notes", "took_us"}.
std::string FormatDeCsv(const DeResult& result);
std::string FormatDeJson(const DeResult& result, int64_t took_us);
// Markers: the column, then the de columns; JSON "test" is the one test every value ran,
// or "mixed".
std::string FormatMarkersCsv(const MarkersResult& result);
std::string FormatMarkersJson(const MarkersResult& result, int64_t took_us);

}  // namespace cellcube
