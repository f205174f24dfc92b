#include "server/assets.h"

namespace cellcube::server {

const Asset* FindAsset(std::string_view path) {
  if (path == "/") path = "/index.html";
  for (size_t i = 0; i < kAssetCount; ++i)
    if (path == kAssets[i].path) return &kAssets[i];
  return nullptr;
}

}  // namespace cellcube::server
