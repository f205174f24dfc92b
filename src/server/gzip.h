// gzip for HTTP answers (docs/API.md): each answer and asset is compressed once, and the
// compressed form is kept beside the plain one (ResponseCache, the asset table).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cellcube::server {

// `data` as a gzip member (RFC 1952), with libdeflate at `level` (1-12); empty when
// no compressor could be allocated (send the plain form). Thread-safe.
std::string Gzip(const void* data, size_t size, int level = 6);

// Whether an Accept-Encoding header value accepts gzip: a "gzip" or "*" coding whose
// q-value is not 0 (RFC 9110 §12.5.3). Absent or empty: no.
bool AcceptsGzip(std::string_view accept_encoding);

}  // namespace cellcube::server
