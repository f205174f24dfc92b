#include "server/gzip.h"

#include <libdeflate.h>

#include <memory>

#include "util/text.h"

namespace cellcube::server {
namespace {

struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a coding's parameters (";q=0.5") leave it acceptable: only q=0 (0, 0.0,
// 0.00, 0.000) refuses it.
bool Acceptable(std::string_view params) {
  while (!params.empty()) {
    const size_t semi = params.find(';');
    const std::string_view p = Trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    if (p.size() < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') continue;
    const std::string_view q = Trim(p.substr(2));
    if (q.empty() || q[0] != '0') return true;  // 1, 1.0, ...
    for (char c : q.substr(1))
      if (c != '.' && c != '0') return true;  // 0.5, ...
    return false;
  }
  return true;
}

}  // namespace

std::string Gzip(const void* data, size_t size, int level) {
  // One compressor per thread and level in use: allocating one costs more than
  // compressing a dot plot.
  thread_local int cached_level = -1;
  thread_local std::unique_ptr<libdeflate_compressor, CompressorDeleter> compressor;
  if (!compressor || cached_level != level) {
    compressor.reset(libdeflate_alloc_compressor(level));
    cached_level = level;
  }
  if (!compressor) return {};  // out of memory: the answer goes out plain
  std::string out(libdeflate_gzip_compress_bound(compressor.get(), size), '\0');
  const size_t n = libdeflate_gzip_compress(compressor.get(), data, size, out.data(), out.size());
  out.resize(n);  // the bound always suffices, so n > 0
  return out;
}

bool AcceptsGzip(std::string_view header) {
  // An explicit "gzip" decides; else "*" does ("gzip;q=0, *" refuses gzip).
  int gzip = -1, any = -1;
  while (!header.empty()) {
    const size_t comma = header.find(',');
    const std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    const size_t semi = item.find(';');
    const std::string_view coding = Trim(item.substr(0, semi));
    const bool ok =
        Acceptable(semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1));
    if (EqualsIgnoringCase(coding, "gzip")) gzip = ok;
    if (coding == "*") any = ok;
  }
  return gzip >= 0 ? gzip == 1 : any == 1;
}

}  // namespace cellcube::server
