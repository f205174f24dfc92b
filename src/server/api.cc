#include "server/api.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string_view>

#include "cellcube/de.h"
#include "cellcube/render.h"
#include "server/assets.h"
#include "server/gzip.h"
#include "server/response_cache.h"
#include "util/text.h"
#include "util/version.h"

namespace cellcube::server {
namespace {

using nlohmann::json;

Response Json(std::string body) {
  Response r;
  r.body = std::move(body);
  return r;
}

// Errors and /healthz describe a moment, not the store: never kept by a browser.
// (Cacheable answers get their ETag and policy in MakeApi.)
Response NoStore(Response r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response Error(HttpStatus status, const std::string& message) {
  return ErrorResponse(status, message);
}

Response ErrorFor(const Status& s) { return Error(HttpStatusFor(s), s.message()); }

// The population of a request (`datasets=D,...` and every `where=COL:VALUE`): the one
// parser of /query, /counts, /de and /markers. Clauses on one column are merged by the
// engine.
Result<Population> ParsePopulation(const Request& req, const ApiLimits& limits) {
  Population population;
  size_t n_values = 0;
  for (const auto& [k, v] : req.params) {
    if (k == "datasets") {
      for (auto& d : SplitList(v)) population.datasets.push_back(d);
    } else if (k == "rollup") {
      for (auto& c : SplitList(v)) population.rollup.push_back(c);
    } else if (k == "where") {
      size_t colon = v.find(':');
      if (colon == std::string::npos || colon == 0)
        return Status::InvalidArgument("where needs COLUMN:VALUE, not '" + v + "'");
      if (++n_values > limits.max_where_values)
        return Status::InvalidArgument("at most " + std::to_string(limits.max_where_values) +
                                       " where values per request");
      population.where.push_back({v.substr(0, colon), {v.substr(colon + 1)}});
    }
  }
  return population;
}

Status CheckParams(const Request& req, const std::vector<std::string>& allowed) {
  for (const auto& [k, v] : req.params) {
    if (!ValidUtf8(k) || !ValidUtf8(v)) return Status::InvalidArgument("parameters must be UTF-8");
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      return Status::InvalidArgument("unknown parameter '" + k + "'");
  }
  return Status::Ok();
}

std::string Param(const Request& req, const std::string& key, const std::string& fallback = "") {
  std::string out = fallback;
  for (const auto& [k, v] : req.params)
    if (k == key) out = v;
  return out;
}

// "genes":[{"id", "symbol", "not_measured_in"}...]: per gene answered, the datasets of
// the selected population (result.datasets) that did not measure it.
void AppendGenesJson(const Snapshot& snap, const QueryResult& result, std::string* body) {
  const StoreReader& store = snap.store();
  body->append("\"genes\":[");
  for (size_t i = 0; i < result.genes.size(); ++i) {
    body->append(i ? ",{\"id\":" : "{\"id\":");
    AppendJsonString(body, result.genes[i]);
    body->append(",\"symbol\":");
    AppendJsonString(body, result.symbols[i]);
    body->append(",\"not_measured_in\":[");
    bool first = true;
    for (int32_t d : result.datasets) {
      if (store.Measured(d, result.gene_indices[i])) continue;
      if (!first) body->push_back(',');
      AppendJsonString(body, store.meta().datasets[static_cast<size_t>(d)].name);
      first = false;
    }
    body->append("]}");
  }
  body->push_back(']');
}

// The envelope's end: `"notes":[...],"took_us":N}`, the time since `t0`.
void AppendNotesAndTime(const QueryResult& result, std::chrono::steady_clock::time_point t0,
                        std::string* body) {
  const auto took =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  body->append(",\"notes\":[");
  for (size_t i = 0; i < result.notes.size(); ++i) {
    if (i) body->push_back(',');
    AppendJsonString(body, result.notes[i]);
  }
  *body += "],\"took_us\":" + std::to_string(took) + "}";
}

// The genes, split columns and population of /api/v1/query and /api/v1/distribution.
Result<Query> QueryParams(const Request& req, const ApiLimits& limits) {
  Query q;
  q.genes = SplitList(Param(req, "genes"));
  if (q.genes.empty()) return Status::InvalidArgument("genes is required, e.g. ?genes=CD3E,MS4A1");
  if (q.genes.size() > limits.max_genes)
    return Status::InvalidArgument("at most " + std::to_string(limits.max_genes) +
                                   " genes per query");
  q.by = SplitList(Param(req, "by"));
  if (q.by.size() > 4) return Status::InvalidArgument("split by at most 4 columns");
  CC_ASSIGN_OR_RETURN(q.population, ParsePopulation(req, limits));
  return q;
}

// The JSON answer of /api/v1/query: the rows as render.h lays them out, in an envelope
// of what only the server tells (the genes' datasets that did not measure them, the time
// since `t0`).
std::string QueryJson(const Snapshot& snap, const QueryResult& result, RowLayout layout,
                      std::chrono::steady_clock::time_point t0) {
  std::string body;
  body.reserve(256 + result.genes.size() * 64 +
               result.rows.size() * (16 + 12 * result.metrics.size()));
  body.append("{\"columns\":[");
  const auto names = result.ColumnNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) body.push_back(',');
    AppendJsonString(&body, names[i]);
  }
  body.append("],");
  AppendGenesJson(snap, result, &body);
  body.push_back(',');
  AppendJsonRows(result, layout, &body);
  AppendNotesAndTime(result, t0, &body);
  return body;
}

Response HandleQuery(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  auto t0 = std::chrono::steady_clock::now();
  if (Status s = CheckParams(
          req, {"genes", "by", "where", "datasets", "rollup", "metrics", "format", "layout"});
      !s.ok())
    return ErrorFor(s);
  const std::string format = Param(req, "format", "json");
  if (format != "json" && format != "csv")
    return Error(HttpStatus::kBadRequest, "format must be json or csv");
  const std::string layout = Param(req, "layout", "objects");
  if (layout != "objects" && layout != "compact")
    return Error(HttpStatus::kBadRequest, "layout must be objects or compact");
  auto q = QueryParams(req, limits);
  if (!q.ok()) return ErrorFor(q.status());
  q->metrics = SplitList(Param(req, "metrics"));
  auto result = snap.engine->Run(*q);
  if (!result.ok()) return ErrorFor(result.status());
  if (format == "csv") {
    Response r;
    r.content_type = "text/csv; charset=utf-8";
    r.body = FormatCsv(*result);
    r.headers.emplace_back("Content-Disposition", "attachment; filename=\"cellcube.csv\"");
    return r;
  }
  return Json(QueryJson(snap, *result,
                        layout == "compact" ? RowLayout::kCompact : RowLayout::kObjects, t0));
}

// GET /api/v1/distribution: the same parameters as /api/v1/query but metrics and
// layout; each row's bins (docs/API.md).
Response HandleDistribution(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  auto t0 = std::chrono::steady_clock::now();
  if (Status s = CheckParams(req, {"genes", "by", "where", "datasets", "rollup", "format"});
      !s.ok())
    return ErrorFor(s);
  const std::string format = Param(req, "format", "json");
  if (format != "json" && format != "csv")
    return Error(HttpStatus::kBadRequest, "format must be json or csv");
  auto q = QueryParams(req, limits);
  if (!q.ok()) return ErrorFor(q.status());
  q->metrics = {"n_cells"};
  q->distribution = true;
  auto result = snap.engine->Run(*q);
  if (!result.ok()) return ErrorFor(result.status());
  if (format == "csv") {
    Response r;
    r.content_type = "text/csv; charset=utf-8";
    r.body = FormatDistributionCsv(*result);
    r.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"cellcube_distribution.csv\"");
    return r;
  }
  std::string body = "{";
  AppendDistributionJson(*result, &body);
  body.push_back(',');
  AppendGenesJson(snap, *result, &body);
  AppendNotesAndTime(*result, t0, &body);
  return Json(body);
}

// A number parameter; `fallback` when absent.
Result<double> NumberParam(const Request& req, const std::string& key, double fallback) {
  const std::string text = Param(req, key);
  if (text.empty()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !std::isfinite(v))
    return Status::InvalidArgument(key + " must be a number, not '" + text + "'");
  return v;
}

Result<int64_t> CountParam(const Request& req, const std::string& key, int64_t fallback) {
  CC_ASSIGN_OR_RETURN(const double v, NumberParam(req, key, static_cast<double>(fallback)));
  if (v < 0 || v != std::floor(v) || v > 1e12)
    return Status::InvalidArgument(key + " must be a whole number, 0 or more");
  return static_cast<int64_t>(v);
}

std::vector<std::string> AllParams(const Request& req, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : req.params)
    if (k == key) out.push_back(v);
  return out;
}

// The options de and markers share: the population, the test and the donors.
template <typename Options>
Status ParseComparison(const Request& req, const ApiLimits& limits, Options* o) {
  const std::string format = Param(req, "format", "json");
  if (format != "json" && format != "csv")
    return Status::InvalidArgument("format must be json or csv");
  CC_ASSIGN_OR_RETURN(o->population, ParsePopulation(req, limits));
  o->testing.names = OptionNames::kParameters;  // errors name min_cells, not --min-cells
  o->testing.test = Param(req, "test", "auto");
  o->testing.donor = Param(req, "donor");
  CC_ASSIGN_OR_RETURN(o->testing.min_cells, CountParam(req, "min_cells", 10));
  return Status::Ok();
}

// docs/DE.md's answers: CSV byte for byte the CLI's, or its JSON with the time taken.
template <typename Answer>
Response DeAnswer(const Request& req, std::chrono::steady_clock::time_point t0,
                  const Result<Answer>& answer, std::string (*csv)(const Answer&),
                  std::string (*json_of)(const Answer&, int64_t), const char* filename) {
  if (!answer.ok()) return ErrorFor(answer.status());
  if (Param(req, "format", "json") == "csv") {
    Response r;
    r.content_type = "text/csv; charset=utf-8";
    r.body = csv(*answer);
    r.headers.emplace_back("Content-Disposition",
                           std::string("attachment; filename=\"") + filename + "\"");
    return r;
  }
  const auto took =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return Json(json_of(*answer, took));
}

Response HandleDe(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  const auto t0 = std::chrono::steady_clock::now();
  if (Status s =
          CheckParams(req, {"compare", "group1", "group2", "where", "datasets", "rollup", "test",
                            "donor", "min_cells", "min_frac", "direction", "top", "format"});
      !s.ok())
    return ErrorFor(s);
  DeOptions o;
  if (Status s = ParseComparison(req, limits, &o); !s.ok()) return ErrorFor(s);
  o.compare = Param(req, "compare");
  if (o.compare.empty())
    return Error(HttpStatus::kBadRequest,
                 "compare is required, e.g. ?compare=cell_type&group1=B%20cell");
  o.group1 = AllParams(req, "group1");
  if (o.group1.empty()) return Error(HttpStatus::kBadRequest, "group1 is required");
  o.group2 = AllParams(req, "group2");
  o.direction = Param(req, "direction", "both");
  auto min_frac = NumberParam(req, "min_frac", 0);
  auto top = CountParam(req, "top", 0);
  for (const Status& s : {min_frac.status(), top.status()})
    if (!s.ok()) return ErrorFor(s);
  o.min_frac = *min_frac;
  o.top = Param(req, "top").empty() ? -1 : *top;
  return DeAnswer<DeResult>(req, t0, RunDe(*snap.engine, o), &FormatDeCsv, &FormatDeJson,
                            "cellcube-de.csv");
}

Response HandleMarkers(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  const auto t0 = std::chrono::steady_clock::now();
  if (Status s =
          CheckParams(req, {"column", "where", "datasets", "rollup", "top", "max_padj", "direction",
                            "min_frac", "test", "donor", "min_cells", "format"});
      !s.ok())
    return ErrorFor(s);
  MarkersOptions o;
  if (Status s = ParseComparison(req, limits, &o); !s.ok()) return ErrorFor(s);
  o.column = Param(req, "column", "cell_type");
  auto top = CountParam(req, "top", 10);
  auto max_padj = NumberParam(req, "max_padj", 0.05);
  auto min_frac = NumberParam(req, "min_frac", 0);
  for (const Status& s : {top.status(), max_padj.status(), min_frac.status()})
    if (!s.ok()) return ErrorFor(s);
  o.top = *top;
  o.max_padj = *max_padj;
  o.direction = Param(req, "direction", "up");
  o.min_frac = *min_frac;
  return DeAnswer<MarkersResult>(req, t0, RunMarkers(*snap.engine, o), &FormatMarkersCsv,
                                 &FormatMarkersJson, "cellcube-markers.csv");
}

Response HandleCounts(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  if (Status s = CheckParams(req, {"where", "datasets", "rollup"}); !s.ok()) return ErrorFor(s);
  auto population = ParsePopulation(req, limits);
  if (!population.ok()) return ErrorFor(population.status());
  auto counts = snap.catalog->FacetCounts(*population);
  if (!counts.ok()) return ErrorFor(counts.status());
  return Json(snap.catalog->CountsJson(*counts));
}

Response HandleGenes(const Snapshot& snap, const Request& req) {
  if (Status s = CheckParams(req, {"q", "limit"}); !s.ok()) return ErrorFor(s);
  long limit = 20;
  const std::string text = Param(req, "limit", "20");
  try {
    size_t used = 0;
    limit = std::stol(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    return Error(HttpStatus::kBadRequest, "limit must be an integer from 1 to 100");
  }
  if (limit < 1 || limit > 100)
    return Error(HttpStatus::kBadRequest, "limit must be an integer from 1 to 100");
  const StringList& ids = snap.store().gene_ids();
  const StringList& symbols = snap.store().gene_symbols();
  json genes = json::array();
  for (int32_t g : snap.catalog->SearchGenes(Param(req, "q"), static_cast<size_t>(limit)))
    genes.push_back({{"id", std::string(ids[static_cast<size_t>(g)])},
                     {"symbol", std::string(symbols[static_cast<size_t>(g)])}});
  return Json(json{{"genes", genes}}.dump());
}

// The ETag of a representation: the plain one's, or for gzip the same with "-gzip"
// inside the quotes (RFC 9110 §8.8.3: each encoding its own tag).
std::string TagFor(const std::string& plain_etag, bool gzip) {
  if (!gzip || plain_etag.size() < 2) return plain_etag;
  return plain_etag.substr(0, plain_etag.size() - 1) + "-gzip\"";
}

// Every asset gzip-compressed once, in kAssets order; empty where that is no smaller.
const std::vector<std::string>& AssetsGzip() {
  static const std::vector<std::string> compressed = [] {
    std::vector<std::string> out;
    for (size_t i = 0; i < kAssetCount; ++i) {
      std::string gz = Gzip(kAssets[i].data, kAssets[i].size, 9);
      out.push_back(gz.size() < kAssets[i].size ? std::move(gz) : std::string());
    }
    return out;
  }();
  return compressed;
}

Response HandleStatic(const Request& req) {
  const Asset* asset = FindAsset(req.path);
  if (!asset) return Error(HttpStatus::kNotFound, "no such page: " + req.path);
  const std::string& gz = AssetsGzip()[static_cast<size_t>(asset - kAssets)];
  const bool gzip = req.accepts_gzip && !gz.empty();
  const std::string etag = TagFor(asset->etag, gzip);
  Response r;
  r.content_type = asset->content_type;
  r.headers.emplace_back("ETag", etag);
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  if (req.header_if_none_match == etag) {
    r.status = static_cast<int>(HttpStatus::kNotModified);
    return r;
  }
  if (gzip) {
    r.headers.emplace_back("Content-Encoding", "gzip");
    r.static_body = reinterpret_cast<const unsigned char*>(gz.data());
    r.static_size = gz.size();
  } else {
    r.static_body = asset->data;
    r.static_size = asset->size;
  }
  return r;
}

// An API answer's gzip form. Level 1: on the request path it compresses a 19 KB dot
// plot in ~40 us (level 6: ~170 us) to 5.6 KB instead of 4.6 KB (docs/BENCHMARKS.md).
std::string AnswerGzip(const std::string& body) { return Gzip(body.data(), body.size(), 1); }

// The headers every API answer carries: its tag, revalidation, and the encoding.
void AddAnswerHeaders(Response& r, bool gzip, const std::string& etag) {
  r.headers.emplace_back("ETag", etag);
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
}

// The cached answer in the encoding asked for, with its tag.
Response Represent(const CachedAnswer& answer, bool gzip, const std::string& etag) {
  Response r;
  r.status = answer.plain.status;
  r.content_type = answer.plain.content_type;
  r.headers = answer.plain.headers;
  AddAnswerHeaders(r, gzip, etag);
  r.body = gzip ? answer.gzip : answer.plain.body;
  return r;
}

// An answer not kept (the cache is off): sent as computed, its body moved, not copied.
Response Finish(Response r, std::string zipped, bool gzip, const std::string& etag) {
  AddAnswerHeaders(r, gzip, etag);
  if (gzip) r.body = std::move(zipped);
  return r;
}

}  // namespace

HttpStatus HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return HttpStatus::kOk;
    case StatusCode::kUsage:
    case StatusCode::kInvalidArgument:
      return HttpStatus::kBadRequest;
    case StatusCode::kNotFound:
      return HttpStatus::kBadRequest;  // an unknown gene/column is a bad query
    default:
      return HttpStatus::kInternalError;
  }
}

namespace {

bool Cacheable(const std::string& path) {
  return path == "/api/v1/query" || path == "/api/v1/counts" || path == "/api/v1/genes" ||
         path == "/api/v1/meta" || path == "/api/v1/de" || path == "/api/v1/markers" ||
         path == "/api/v1/distribution";
}

// The request as the answer depends on it: the path and the parameters in order.
std::string CacheKey(const Request& req) {
  std::string key = req.path;
  for (const auto& [k, v] : req.params) {
    key.push_back('\x1f');
    key += k;
    key.push_back('\x1e');
    key += v;
  }
  return key;
}

// Names the answer's content: the request, the store file (its inode, size and mtime, so
// a restarted server on another store never matches an old tag) and this version.
std::string ETagFor(const Snapshot& snap, const std::string& key) {
  const StoreReader& s = snap.store();
  char buf[128];
  std::snprintf(buf, sizeof buf, "\"%zx-%llx-%llx-%llx-%s\"", std::hash<std::string>{}(key),
                static_cast<unsigned long long>(s.file_inode()),
                static_cast<unsigned long long>(s.file_size()),
                static_cast<unsigned long long>(s.file_mtime_ns()), Version());
  return buf;
}

Response Route(const Snapshot& snap, const Request& req, const ApiLimits& limits) {
  if (req.path == "/api/v1/query") return HandleQuery(snap, req, limits);
  if (req.path == "/api/v1/meta") return Json(snap.catalog->meta_json());
  if (req.path == "/api/v1/counts") return HandleCounts(snap, req, limits);
  if (req.path == "/api/v1/genes") return HandleGenes(snap, req);
  if (req.path == "/api/v1/de") return HandleDe(snap, req, limits);
  if (req.path == "/api/v1/markers") return HandleMarkers(snap, req, limits);
  if (req.path == "/api/v1/distribution") return HandleDistribution(snap, req, limits);
  if (req.path == "/healthz") {
    std::string name = snap.store().path();
    return NoStore(
        Json(json{{"status", "ok"}, {"store", name}, {"generation", snap.generation}}.dump()));
  }
  return Error(HttpStatus::kNotFound,
               "no such endpoint: " + req.path +
                   " (see /api/v1/query, /api/v1/meta, /api/v1/counts, /api/v1/genes, "
                   "/api/v1/de, /api/v1/markers, /api/v1/distribution)");
}

}  // namespace

Handler MakeApi(const StoreHolder* holder, ApiLimits limits) {
  auto cache = std::make_shared<ResponseCache>(limits.cache_bytes);
  (void)AssetsGzip();  // compressed now, not on the first page load
  return [holder, limits, cache](const Request& req) -> Response {
    size_t query_bytes = 0;
    for (const auto& [k, v] : req.params) query_bytes += k.size() + v.size() + 2;
    if (query_bytes > limits.max_query_string)
      return Error(
          HttpStatus::kUriTooLong,
          "query string too long (at most " + std::to_string(limits.max_query_string) + " bytes)");
    if (req.path.rfind("/api/", 0) != 0 && req.path != "/healthz") return HandleStatic(req);
    auto snap = holder->Get();
    if (!Cacheable(req.path)) return Route(*snap, req, limits);
    const std::string key = CacheKey(req);
    // A gzip client gets the answer compressed; the cache keeps that form beside the plain one.
    const bool gzip = req.accepts_gzip;
    const std::string etag = TagFor(ETagFor(*snap, key), gzip);
    // The tag of what is sent: the plain one when a gzip client gets it plain (its
    // compression failed).
    const auto tag = [&](bool sent_gzip) {
      return sent_gzip == gzip ? etag : TagFor(ETagFor(*snap, key), sent_gzip);
    };
    if (req.header_if_none_match == etag) {
      Response r;
      r.status = static_cast<int>(HttpStatus::kNotModified);
      r.headers.emplace_back("ETag", etag);
      r.headers.emplace_back("Vary", "Accept-Encoding");
      return r;
    }
    if (auto hit = cache->Find(snap->generation, key)) {
      if (!gzip || !hit->gzip.empty()) return Represent(*hit, gzip, etag);
      // Kept plain (first asked without gzip): compressed now, not computed again.
      auto zipped =
          std::make_shared<CachedAnswer>(CachedAnswer{hit->plain, AnswerGzip(hit->plain.body)});
      cache->Insert(snap->generation, key, zipped);
      return Represent(*zipped, !zipped->gzip.empty(), tag(!zipped->gzip.empty()));
    }
    Response r = Route(*snap, req, limits);
    if (r.status != 200) return r;  // an error: not kept (Error)
    // Compressed only for a client that takes gzip: compressing costs more than computing
    // a dot plot, and a plain client would pay it for nothing (docs/API.md).
    std::string zipped = gzip ? AnswerGzip(r.body) : std::string();
    const bool send_gzip = !zipped.empty();
    if (cache->max_bytes() == 0)
      return Finish(std::move(r), std::move(zipped), send_gzip, tag(send_gzip));
    auto answer = std::make_shared<CachedAnswer>(CachedAnswer{std::move(r), std::move(zipped)});
    // Browsers revalidate (no-cache) and get 304 while the store is unchanged.
    Response out = Represent(*answer, send_gzip, tag(send_gzip));
    cache->Insert(snap->generation, key, std::move(answer));
    return out;
  };
}
}  // namespace cellcube::server
