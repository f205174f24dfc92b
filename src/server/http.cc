#include "server/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "server/gzip.h"

namespace cellcube::server {

struct HttpServer::Impl {
  Handler handler;
  MHD_Daemon* daemon = nullptr;
  int port = 0;
  std::atomic<int> open_connections{0};
  // Requests whose response is queued or being sent: Drain waits for them.
  std::atomic<int> in_flight{0};

  // Request deadline: libmicrohttpd's idle timeout restarts with every byte received,
  // so a client dribbling its request a byte at a time would hold its connection
  // forever. A connection must deliver a whole request within the idle timeout of
  // opening or of its previous response; the watchdog shuts down the socket of one
  // that does not (libmicrohttpd then closes it).
  struct Conn {
    int fd = -1;
    bool answering = false;  // the whole request is in; its response is being made or sent
    std::chrono::steady_clock::time_point waiting_since;
  };
  std::mutex conns_mu;
  std::unordered_map<MHD_Connection*, Conn> conns;
  std::chrono::seconds request_timeout{15};
  std::thread watchdog;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop = false;

  void Answering(MHD_Connection* c, bool answering) {
    std::lock_guard<std::mutex> lock(conns_mu);
    auto it = conns.find(c);
    if (it == conns.end()) return;
    it->second.answering = answering;
    it->second.waiting_since = std::chrono::steady_clock::now();
  }
  void Watch() {
    std::unique_lock<std::mutex> lock(stop_mu);
    while (!stop_cv.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop; })) {
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> conns_lock(conns_mu);  // CLOSED erases under it: fd is open
      for (auto& [connection, conn] : conns)
        if (!conn.answering && conn.fd >= 0 && now - conn.waiting_since > request_timeout) {
          shutdown(conn.fd, SHUT_RDWR);
          conn.fd = -1;
        }
    }
  }
  void StopWatchdog() {
    {
      std::lock_guard<std::mutex> lock(stop_mu);
      stop = true;
    }
    stop_cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
  }
};

namespace {

MHD_Result CollectParam(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* params = static_cast<std::vector<std::pair<std::string, std::string>>*>(cls);
  params->emplace_back(key ? key : "", value ? value : "");
  return MHD_YES;
}

MHD_Result Queue(MHD_Connection* connection, const Response& r) {
  MHD_Response* response =
      r.static_body
          ? MHD_create_response_from_buffer(
                r.static_size, const_cast<unsigned char*>(r.static_body), MHD_RESPMEM_PERSISTENT)
          : MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                            MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  MHD_add_response_header(response, "Content-Type", r.content_type.c_str());
  MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
  for (const auto& [k, v] : r.headers) MHD_add_response_header(response, k.c_str(), v.c_str());
  MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(r.status), response);
  MHD_destroy_response(response);
  return ret;
}

MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                     const char*, const char*, size_t* upload_data_size, void** con_cls) {
  auto* impl = static_cast<HttpServer::Impl*>(cls);
  // MHD calls once when the headers are in, then until the body (if any) is consumed,
  // then once more with nothing: answering only then keeps the connection alive.
  static int headers_seen, body_seen;
  if (*con_cls == nullptr) {
    *con_cls = &headers_seen;
    impl->in_flight++;  // until OnCompleted
    return MHD_YES;
  }
  if (*upload_data_size != 0) {
    *upload_data_size = 0;  // discard it; GET and HEAD carry no body
    *con_cls = &body_seen;
    return MHD_YES;
  }
  impl->Answering(connection, true);  // the whole request is in
  if (*con_cls == &body_seen)
    return Queue(connection, ErrorResponse(HttpStatus::kPayloadTooLarge, "requests carry no body"));
  const std::string m = method ? method : "";
  if (m != "GET" && m != "HEAD") {
    Response r = ErrorResponse(HttpStatus::kMethodNotAllowed, "only GET and HEAD are served");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return Queue(connection, r);
  }
  Request req;
  req.method = m;
  req.path = url ? url : "/";
  MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, CollectParam, &req.params);
  if (const char* inm = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "If-None-Match"))
    req.header_if_none_match = inm;
  if (const char* ae = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Accept-Encoding"))
    req.accepts_gzip = AcceptsGzip(ae);
  Response r;
  try {
    r = impl->handler(req);
  } catch (const std::exception& e) {
    r = ErrorResponse(HttpStatus::kInternalError, std::string("internal error: ") + e.what());
  }
  return Queue(connection, r);
}

// Every request that reached OnRequest ends here once its response is sent (or the
// connection died): the in-flight count Drain waits on.
void OnCompleted(void* cls, MHD_Connection* connection, void** con_cls,
                 MHD_RequestTerminationCode) {
  if (*con_cls == nullptr) return;
  static_cast<HttpServer::Impl*>(cls)->Answering(connection, false);  // waits for the next
  static_cast<HttpServer::Impl*>(cls)->in_flight--;
  *con_cls = nullptr;
}

// Percent-decoding of the path and parameters, as libmicrohttpd's own, except that an
// encoded NUL (%00) becomes U+FFFD: the handler sees C strings, and a NUL would
// silently cut "app.js%00.txt" to "app.js" or a gene name to its prefix.
size_t Unescape(void*, MHD_Connection*, char* s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  char* out = s;
  for (const char* in = s; *in;) {
    int hi = in[0] == '%' ? hex(in[1]) : -1;
    int lo = hi >= 0 ? hex(in[2]) : -1;
    if (lo < 0) {
      *out++ = *in++;
      continue;
    }
    const int byte = hi * 16 + lo;
    if (byte == 0) {  // three bytes in, three bytes out
      *out++ = static_cast<char>(0xEF);
      *out++ = static_cast<char>(0xBF);
      *out++ = static_cast<char>(0xBD);
    } else {
      *out++ = static_cast<char>(byte);
    }
    in += 3;
  }
  *out = '\0';
  return static_cast<size_t>(out - s);
}

void OnConnection(void* cls, MHD_Connection* connection, void**,
                  MHD_ConnectionNotificationCode code) {
  auto* impl = static_cast<HttpServer::Impl*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    impl->open_connections++;
    // Responses go out as header + body writes: without NODELAY, Nagle's algorithm and
    // the client's delayed ACK stall every keep-alive response by tens of milliseconds.
    if (const MHD_ConnectionInfo* info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD)) {
      int one = 1;
      setsockopt(info->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> lock(impl->conns_mu);
      impl->conns[connection] = {info->connect_fd, false, std::chrono::steady_clock::now()};
    }
  }
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    impl->open_connections--;
    std::lock_guard<std::mutex> lock(impl->conns_mu);
    impl->conns.erase(connection);
  }
}

}  // namespace

Response ErrorResponse(HttpStatus status, const std::string& message) {
  Response r;
  r.status = static_cast<int>(status);
  r.body = nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                   nlohmann::json::error_handler_t::replace);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->StopWatchdog();
  if (impl_->daemon) MHD_stop_daemon(impl_->daemon);
}

int HttpServer::port() const { return impl_->port; }

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options, Handler handler) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(options.port));
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return Status::Usage("--host needs an IPv4 address such as 127.0.0.1 or 0.0.0.0, not '" +
                         options.host + "'");
  auto impl = std::make_unique<Impl>();
  impl->handler = std::move(handler);
  impl->request_timeout = std::chrono::seconds(options.idle_timeout_seconds);
  unsigned threads = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
  impl->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC, 0, nullptr, nullptr, &OnRequest, impl.get(),
      MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
      MHD_OPTION_CONNECTION_TIMEOUT, options.idle_timeout_seconds,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, options.header_limit_bytes, MHD_OPTION_CONNECTION_LIMIT,
      options.max_connections, MHD_OPTION_NOTIFY_CONNECTION, &OnConnection, impl.get(),
      MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_NOTIFY_COMPLETED, &OnCompleted, impl.get(),
      MHD_OPTION_UNESCAPE_CALLBACK, &Unescape, nullptr, MHD_OPTION_END);
  if (!impl->daemon)
    return Status::IoError("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                           " (is the port in use? choose another with --port)");
  const MHD_DaemonInfo* info = MHD_get_daemon_info(impl->daemon, MHD_DAEMON_INFO_BIND_PORT);
  impl->port = info ? info->port : options.port;
  if (options.idle_timeout_seconds > 0)
    impl->watchdog = std::thread([p = impl.get()] { p->Watch(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Drain(int grace_ms) {
  if (!impl_->daemon) return;
  MHD_quiesce_daemon(impl_->daemon);  // stop accepting; keep serving open connections
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (impl_->in_flight > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->StopWatchdog();
  MHD_stop_daemon(impl_->daemon);
  impl_->daemon = nullptr;
}

}  // namespace cellcube::server
