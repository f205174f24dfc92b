// The HTTP routes of docs/API.md over a StoreHolder: the one place where a Status
// becomes an HTTP status code.
#pragma once

#include "server/http.h"
#include "server/store_holder.h"

namespace cellcube::server {

struct ApiLimits {
  size_t max_genes = 200;
  size_t max_where_values = 50;
  size_t max_query_string = 8 * 1024;
  // Rendered answers kept per store generation (ResponseCache); 0 = none.
  size_t cache_bytes = size_t{64} << 20;
};

// The handler for every request. `holder` must outlive it. Answers of /api/v1/query,
// /counts, /genes and /meta carry an ETag naming the store file and the request (a
// matching If-None-Match gets 304) and are cached per store generation.
Handler MakeApi(const StoreHolder* holder, ApiLimits limits = {});

// The one Status -> HTTP mapping: 400 for a bad query (usage, invalid argument, and an
// unknown gene, column or value: NotFound), 500 otherwise. (404 is for paths the server
// does not have, which MakeApi answers itself.)
HttpStatus HttpStatusFor(const Status& status);

}  // namespace cellcube::server
