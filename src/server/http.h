// A minimal HTTP/1.1 front on GNU libmicrohttpd: an event-driven (epoll) thread pool
// with keep-alive, connection and header-size limits and idle timeouts. Requests are
// handed to one Handler as plain values; no libmicrohttpd type leaves http.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::server {

struct Request {
  std::string method;
  std::string path;  // URL path, decoded, without the query string
  std::vector<std::pair<std::string, std::string>> params;  // decoded, in order, repeats kept
  std::string header_if_none_match;
  bool accepts_gzip = false;  // Accept-Encoding allows gzip (AcceptsGzip)
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;                            // owned body, or
  const unsigned char* static_body = nullptr;  // a body that outlives the server
  size_t static_size = 0;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The HTTP status codes cellcube answers with, named once.
enum class HttpStatus : int {
  kOk = 200,
  kNotModified = 304,
  kBadRequest = 400,
  kNotFound = 404,
  kMethodNotAllowed = 405,
  kPayloadTooLarge = 413,
  kUriTooLong = 414,
  kInternalError = 500,
};

// An error answer: {"error": message} (invalid UTF-8 replaced), Cache-Control: no-store
// (an error describes a moment, not the store). The one error body of the server.
Response ErrorResponse(HttpStatus status, const std::string& message);

using Handler = std::function<Response(const Request&)>;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;  // 0 = every core
  unsigned idle_timeout_seconds = 15;
  // libmicrohttpd's memory per connection, for the request line, headers and parsed
  // arguments (thousands of where values take more for their parsed pairs than for their
  // text): large enough that a long query string reaches the API, which refuses one
  // over ApiLimits::max_query_string with a JSON 414 (beyond it, libmicrohttpd's page).
  // No larger: libmicrohttpd 0.9.75 zeroes the whole pool after each request on a
  // keep-alive connection, so its size is paid per request (docs/RELIABILITY.md).
  size_t header_limit_bytes = 384 * 1024;
  unsigned max_connections = 4096;
};

class HttpServer {
 public:
  // Binds and starts serving. Errors: address in use, bad host, ...
  static Result<std::unique_ptr<HttpServer>> Start(const HttpOptions& options, Handler handler);
  ~HttpServer();
  // The port actually bound (useful with port 0).
  int port() const;
  // Stops accepting, lets requests in flight finish sending (up to `grace_ms`), then
  // closes idle keep-alive connections.
  void Drain(int grace_ms);

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cellcube::server
