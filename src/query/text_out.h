// Rendering numbers and strings into CSV and JSON text (internal to src/query): one
// implementation for every answer the engine formats (queries, DE).
#pragma once

#include <cstdint>
#include <string>

#include "util/text.h"

namespace cellcube::text_out {

void AppendInt(std::string* out, int64_t v);
// The shortest text that reads back as the same double ("0.5", "1e-05").
void AppendDouble(std::string* out, double v);
// RFC 4180: quoted when it holds ',', '"', CR or LF.
void AppendCsvField(std::string* out, const std::string& s);
using cellcube::AppendJsonString;  // util/text.h: one JSON escaper for every part

}  // namespace cellcube::text_out
