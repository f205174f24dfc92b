// One ontology term map as published by cellxgene-ontology-guide (docs/ONTOLOGY.md):
// a JSON object {term id: {"label", "ancestors": {id: distance}, "synonyms": [...],
// "deprecated", "replaced_by", ...}}, plain, gzip- or zstd-compressed. Read in one
// streaming pass (nlohmann's SAX parser) keeping only what matching and embedding need
// (not the descriptions, comments, ...), so the 32 MB of JSON of CL + UBERON + MONDO
// never sit in memory as a document.
//
// Ownership: plain values. Thread safety: const values may be shared between threads.
// Errors: one line naming the file: NotFound (no such file), InvalidArgument (not a term
// map: bad compression, bad JSON, a term without a label, or a kept field of the wrong
// type: label a string; deprecated true/false; replaced_by an id; ancestors an object of
// id: whole distance; synonyms a list of strings; null stands for absent but in label).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::ontology {

struct TermMap {
  std::string name;     // the prefix (before ':') most ids share: "CL", "UBERON", "MONDO"
  std::string version;  // from a file name like "CL-ontology-v2026-03-26.json.zst"; ""
  std::string source;   // the path (or name) it was read from

  // Terms ascending by id (byte order).
  std::vector<std::string> ids;
  std::vector<std::string> labels;
  std::vector<uint8_t> deprecated;   // 1 = deprecated (obsolete)
  std::vector<int32_t> replaced_by;  // a term index, -1 when none or not in this map
  // Per term t: ancestors[ancestor_begin[t], ancestor_begin[t + 1]), term indices
  // ascending, with the file's distances; ancestors not in the map are dropped.
  std::vector<int64_t> ancestor_begin{0};
  std::vector<int32_t> ancestors;
  std::vector<int32_t> ancestor_distance;
  // Per term t: synonyms[synonym_begin[t], synonym_begin[t + 1]).
  std::vector<int64_t> synonym_begin{0};
  std::vector<std::string> synonyms;

  int32_t size() const { return static_cast<int32_t>(ids.size()); }
  // The term with exactly this id, -1 when none.
  int32_t Find(std::string_view id) const;
};

// Reads a term map file: zstd (magic 28 B5 2F FD), gzip (1F 8B) or plain JSON, decided
// by its first bytes.
Result<TermMap> LoadTermMap(const std::string& path);
// The same from bytes in memory (compressed or not); `source` names it in errors and
// gives the version as a file name would.
Result<TermMap> ParseTermMap(std::string_view bytes, const std::string& source);

}  // namespace cellcube::ontology
