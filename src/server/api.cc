#include "server/api.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/assets.h"

namespace cellcube::server {
namespace {

using nlohmann::json;

Response Json(std::string body, int status = 200) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response Error(int status, const std::string& message) {
  return Json(json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace),
              status);
}

Response ErrorFor(const Status& s) { return Error(HttpStatusFor(s), s.message()); }

bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// Parameters shared by /query and /counts.
struct Selection {
  std::vector<WhereClause> where;
  std::vector<std::string> datasets;
};

Result<Selection> ParseSelection(const Request& req, const ApiLimits& limits) {
  Selection sel;
  size_t n_values = 0;
  for (const auto& [k, v] : req.params) {
    if (k == "datasets") {
      for (auto& d : SplitComma(v)) sel.datasets.push_back(d);
    } else if (k == "where") {
      size_t colon = v.find(':');
      if (colon == std::string::npos || colon == 0)
        return Status::InvalidArgument("where needs COLUMN:VALUE, not '" + v + "'");
      std::string column = v.substr(0, colon), value = v.substr(colon + 1);
      if (++n_values > limits.max_where_values)
        return Status::InvalidArgument("at most " + std::to_string(limits.max_where_values) +
                                       " where values per request");
      auto it = std::find_if(sel.where.begin(), sel.where.end(),
                             [&](const WhereClause& w) { return w.column == column; });
      if (it == sel.where.end()) sel.where.push_back({column, {value}});
      else it->values.push_back(value);
    }
  }
  return sel;
}

Status CheckParams(const Request& req, const std::vector<std::string>& allowed,
                   const ApiLimits& limits) {
  size_t total = 0;
  for (const auto& [k, v] : req.params) {
    total += k.size() + v.size() + 2;
    if (!ValidUtf8(k) || !ValidUtf8(v)) return Status::InvalidArgument("parameters must be UTF-8");
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      return Status::InvalidArgument("unknown parameter '" + k + "'");
  }
  if (total > limits.max_query_string)
    return Status::InvalidArgument("query string too long (at most " +
                                   std::to_string(limits.max_query_string) + " bytes)");
  return Status::Ok();
}

std::string Param(const Request& req, const std::string& key, const std::string& fallback = "") {
  std::string out = fallback;
  for (const auto& [k, v] : req.params)
    if (k == key) out = v;
  return out;
}

Response HandleQuery(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  auto t0 = std::chrono::steady_clock::now();
  if (Status s = CheckParams(req, {"genes", "by", "where", "datasets", "metrics", "format"}, limits);
      !s.ok())
    return ErrorFor(s);
  const std::string format = Param(req, "format", "json");
  if (format != "json" && format != "csv") return Error(400, "format must be json or csv");
  Query q;
  q.genes = SplitComma(Param(req, "genes"));
  if (q.genes.empty()) return Error(400, "genes is required, e.g. ?genes=CD3E,MS4A1");
  if (q.genes.size() > limits.max_genes)
    return Error(400, "at most " + std::to_string(limits.max_genes) + " genes per query");
  q.by = SplitComma(Param(req, "by"));
  if (q.by.size() > 4) return Error(400, "split by at most 4 columns");
  q.metrics = SplitComma(Param(req, "metrics"));
  auto sel = ParseSelection(req, limits);
  if (!sel.ok()) return ErrorFor(sel.status());
  q.where = std::move(sel->where);
  q.datasets = std::move(sel->datasets);
  auto result = snap.engine->Run(q);
  if (!result.ok()) return ErrorFor(result.status());
  if (format == "csv") {
    Response r;
    r.content_type = "text/csv; charset=utf-8";
    r.body = FormatCsv(*result);
    r.headers.emplace_back("Content-Disposition", "attachment; filename=\"cellcube.csv\"");
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }
  const StoreReader& store = snap.store();
  auto gene_index = snap.engine->ResolveGenes(result->genes);
  json genes = json::array();
  for (size_t i = 0; i < result->genes.size(); ++i) {
    json missing = json::array();
    if (gene_index.ok())
      for (int64_t d = 0; d < store.n_datasets(); ++d) {
        const std::string& name = store.meta().datasets[d].name;
        bool selected = q.datasets.empty() ||
                        std::find(q.datasets.begin(), q.datasets.end(), name) != q.datasets.end();
        if (selected && !store.Measured(d, (*gene_index)[i])) missing.push_back(name);
      }
    genes.push_back({{"id", result->genes[i]},
                     {"symbol", result->symbols[i]},
                     {"not_measured_in", missing}});
  }
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
  std::string body = "{\"columns\":" + json(result->ColumnNames()).dump() +
                     ",\"rows\":" + FormatJson(*result) + ",\"genes\":" + genes.dump() +
                     ",\"took_us\":" + std::to_string(took) + "}";
  return Json(std::move(body));
}

Response HandleCounts(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  if (Status s = CheckParams(req, {"where", "datasets"}, limits); !s.ok()) return ErrorFor(s);
  auto sel = ParseSelection(req, limits);
  if (!sel.ok()) return ErrorFor(sel.status());
  auto counts = snap.catalog->FacetCounts(sel->where, sel->datasets);
  if (!counts.ok()) return ErrorFor(counts.status());
  return Json(snap.catalog->CountsJson(*counts));
}

Response HandleGenes(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  if (Status s = CheckParams(req, {"q", "limit"}, limits); !s.ok()) return ErrorFor(s);
  long limit = 20;
  const std::string text = Param(req, "limit", "20");
  try {
    size_t used = 0;
    limit = std::stol(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    return Error(400, "limit must be an integer from 1 to 100");
  }
  if (limit < 1 || limit > 100) return Error(400, "limit must be an integer from 1 to 100");
  const StoreData& m = snap.store().meta();
  json genes = json::array();
  for (int32_t g : snap.catalog->SearchGenes(Param(req, "q"), static_cast<size_t>(limit)))
    genes.push_back({{"id", m.gene_ids[g]}, {"symbol", m.gene_symbols[g]}});
  return Json(json{{"genes", genes}}.dump());
}

Response HandleStatic(const Request& req) {
  const Asset* asset = FindAsset(req.path);
  if (!asset) return Error(404, "no such page: " + req.path);
  Response r;
  r.content_type = asset->content_type;
  r.headers.emplace_back("ETag", asset->etag);
  r.headers.emplace_back("Cache-Control", "no-cache");
  if (req.header_if_none_match == asset->etag) {
    r.status = 304;
    return r;
  }
  r.static_body = asset->data;
  r.static_size = asset->size;
  return r;
}

}  // namespace

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kUsage:
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 400;  // an unknown gene/column is a bad query
    default: return 500;
  }
}

Handler MakeApi(const StoreHolder* holder, ApiLimits limits) {
  return [holder, limits](const Request& req) -> Response {
    if (req.path.rfind("/api/", 0) != 0 && req.path != "/healthz") return HandleStatic(req);
    auto snap = holder->Get();
    if (req.path == "/api/v1/query") return HandleQuery(*snap, req, limits);
    if (req.path == "/api/v1/meta") return Json(snap->catalog->meta_json());
    if (req.path == "/api/v1/counts") return HandleCounts(*snap, req, limits);
    if (req.path == "/api/v1/genes") return HandleGenes(*snap, req, limits);
    if (req.path == "/healthz") {
      std::string name = snap->store().path();
      return Json(json{{"status", "ok"}, {"store", name}, {"generation", snap->generation}}.dump());
    }
    return Error(404, "no such endpoint: " + req.path +
                          " (see /api/v1/query, /api/v1/meta, /api/v1/counts, /api/v1/genes)");
  };
}

}  // namespace cellcube::server
