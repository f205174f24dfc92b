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
};

// The handler for every request. `holder` must outlive it.
Handler MakeApi(const StoreHolder* holder, ApiLimits limits = {});

// 400 for a bad query, 404 for something that does not exist, 500 otherwise.
int HttpStatusFor(const Status& status);

}  // namespace cellcube::server
