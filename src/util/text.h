// Small text helpers shared by every part: number formatting, suggestions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cellcube {

// Formats a double as Python's repr() does ("0.5", "11.0", "1e-05", "nan").
std::string FormatPythonFloat(double v);
// The same for a float32 value: its shortest digits as float32 ("0.1", as numpy prints).
std::string FormatPythonFloat32(float v);

// Levenshtein distance, case-insensitive.
size_t EditDistance(std::string_view a, std::string_view b);

// Up to `max` candidates nearest to `name` (by edit distance, then prefix/substring
// match), nearest first; empty when nothing is reasonably close.
std::vector<std::string> NearNames(std::string_view name,
                                   const std::vector<std::string>& candidates, size_t max = 3);

// " (did you mean 'a', 'b' or 'c'?)" for these near names; "" for none.
std::string DidYouMean(const std::vector<std::string>& near);
// " (did you mean 'a' or 'b'?)" or " (available: 'a', 'b', ...)" or "".
std::string SuggestionSuffix(std::string_view name, const std::vector<std::string>& candidates);

// "'a', 'b', 'c'" with at most `max` items and ", ..." after.
std::string QuoteList(const std::vector<std::string>& items, size_t max = 8);

// ASCII case folding (never the locale's): the one lower-casing of cellcube, for gene
// names, column names and HTTP tokens alike.
inline char AsciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string ToLower(std::string_view s);
bool EqualsIgnoringCase(std::string_view a, std::string_view b);

// Appends `s` as a JSON string literal: '"' and '\\' escaped, control characters as
// \u00XX, everything else (UTF-8 included) as is. The one JSON escaper of cellcube.
void AppendJsonString(std::string* out, std::string_view s);

// Splits "a,b,,c" into {"a", "b", "c"}: the items between `sep`s, empty ones dropped.
std::vector<std::string> SplitList(std::string_view s, char sep = ',');
// `items` joined by ", " into lines of at most `width` characters (an item longer than
// that has a line of its own): the first starts with `first`, the others with `indent`.
// Each line ends with '\n'.
std::string WrapList(const std::vector<std::string>& items, const std::string& first,
                     const std::string& indent, size_t width = 100);
// The items with `sep` between them: Join({"a", "b"}) = "a,b".
std::string Join(const std::vector<std::string>& items, std::string_view sep = ",");

// Human-readable byte count: "1.4 MB".
std::string FormatBytes(uint64_t bytes);
// The same in powers of 1024 ("4.0 GiB"), for limits users set with K/M/G suffixes.
std::string FormatBinaryBytes(uint64_t bytes);

// True when `s` is UTF-8 by RFC 3629: no overlong forms, surrogates or code points past
// U+10FFFF.
bool ValidUtf8(std::string_view s);
// `s` made safe for one line of a terminal or log: invalid UTF-8 bytes and control
// characters written as \xNN, cut to about `max_bytes` with "...".
std::string PrintableLine(std::string_view s, size_t max_bytes);

}  // namespace cellcube
