// The web page's files, embedded in the binary at build time (embed_assets.py).
#pragma once

#include <cstddef>
#include <string_view>

namespace cellcube::server {

struct Asset {
  const char* path;  // "/index.html", "/app.js", ...
  const char* content_type;
  const char* etag;  // quoted
  const unsigned char* data;
  size_t size;
};

extern const Asset kAssets[];
extern const size_t kAssetCount;

// The asset for a URL path ("/" is "/index.html"), or nullptr. Paths are looked up
// in the embedded table only: nothing on disk is ever served.
const Asset* FindAsset(std::string_view path);

}  // namespace cellcube::server
