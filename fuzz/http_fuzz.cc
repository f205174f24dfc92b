// libFuzzer target: the HTTP API handler (parameter parsing, query, counts, genes,
// static files) on requests built from the fuzz bytes, over a small store; no network.
//
// Input: lines separated by '\n'. Line 0 is the method ("GET", "HEAD", anything);
// line 1 the decoded path; each further line a parameter "key=value" (split at the
// first '='; a line without '=' is a key with an empty value), except a line starting
// with '#', which sets If-None-Match. Bytes are passed on raw (NULs, invalid UTF-8).
// The store comes from $CELLCUBE_FUZZ_STORE (make fuzz builds one).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "server/api.h"
#include "server/store_holder.h"

using namespace cellcube;

namespace {

struct Env {
  std::unique_ptr<server::StoreHolder> holder;
  server::Handler handler;
};

Env* Setup() {
  const char* path = std::getenv("CELLCUBE_FUZZ_STORE");
  if (!path) {
    std::fprintf(stderr, "http_fuzz: set CELLCUBE_FUZZ_STORE to a store (.h5ad)\n");
    std::abort();
  }
  auto holder = server::StoreHolder::Open(path);
  if (!holder.ok()) {
    std::fprintf(stderr, "http_fuzz: %s\n", holder.status().message().c_str());
    std::abort();
  }
  auto* env = new Env;
  env->holder = std::move(*holder);
  env->handler = server::MakeApi(env->holder.get());
  return env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = Setup();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  server::Request req;
  int line = 0;
  while (true) {
    const size_t nl = in.find('\n');
    std::string_view part = in.substr(0, nl);
    if (line == 0) {
      req.method = std::string(part);
    } else if (line == 1) {
      req.path = std::string(part);
    } else if (!part.empty() && part[0] == '#') {
      req.header_if_none_match = std::string(part.substr(1));
    } else {
      const size_t eq = part.find('=');
      if (eq == std::string_view::npos) {
        req.params.emplace_back(std::string(part), "");
      } else {
        req.params.emplace_back(std::string(part.substr(0, eq)), std::string(part.substr(eq + 1)));
      }
    }
    ++line;
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  server::Response resp = env->handler(req);
  if (resp.status < 100 || resp.status > 599) std::abort();
  if (resp.static_body == nullptr && resp.status >= 400 && resp.body.empty()) std::abort();
  return 0;
}
