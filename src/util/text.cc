#include "util/text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace cellcube {

namespace {
template <typename Float>
std::string FormatShortestPython(Float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Shortest round-trip digits in scientific form, then laid out by Python's rule:
  // positional when -4 <= exponent < 16, else scientific with a 2-digit exponent.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e_pos = sci.find('e');
  int exponent = std::atoi(sci.c_str() + e_pos + 1);
  std::string digits;
  for (size_t i = 0; i < e_pos; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    int point = exponent + 1;  // digits before the decimal point
    if (point <= 0) {
      out.append("0.").append(static_cast<size_t>(-point), '0').append(digits);
    } else if (point >= static_cast<int>(digits.size())) {
      out.append(digits).append(static_cast<size_t>(point) - digits.size(), '0').append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(point))
          .append(".")
          .append(digits, static_cast<size_t>(point));
    }
  } else {
    out.append(digits, 0, 1);
    if (digits.size() > 1) out.append(".").append(digits, 1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp_buf;
  }
  return out;
}
}  // namespace

std::string FormatPythonFloat(double v) { return FormatShortestPython(v); }
std::string FormatPythonFloat32(float v) { return FormatShortestPython(v); }

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = AsciiLower(c);
  return out;
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  return true;
}

std::vector<std::string> SplitList(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(sep, pos);
    if (end == std::string_view::npos) end = s.size();
    if (end > pos) out.emplace_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::string WrapList(const std::vector<std::string>& items, const std::string& first,
                     const std::string& indent, size_t width) {
  std::string out, line = first;
  bool line_empty = first.empty();  // nothing on the line to put a space after
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string item = items[i] + (i + 1 < items.size() ? "," : "");
    if (!line_empty && line.size() + 1 + item.size() > width) {
      out += line + "\n";
      line = indent;
      line_empty = true;
    }
    line += (line_empty ? "" : " ") + item;
    line_empty = false;
  }
  return out + line + "\n";
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out.append(sep);
    out.append(items[i]);
  }
  return out;
}

size_t EditDistance(std::string_view a_in, std::string_view b_in) {
  std::string a = ToLower(a_in), b = ToLower(b_in);
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> NearNames(std::string_view name,
                                   const std::vector<std::string>& candidates, size_t max) {
  std::string lname = ToLower(name);
  struct Scored {
    size_t score;
    const std::string* s;
  };
  std::vector<Scored> scored;
  size_t limit = std::max<size_t>(2, name.size() / 3);
  for (const auto& c : candidates) {
    std::string lc = ToLower(c);
    size_t d = EditDistance(lname, lc);
    // Containment counts both ways, but only for names of 3 or more characters, and a
    // candidate inside the name must cover half of it: else a one-letter gene ('a', in
    // mouse) is "close" to every name that has an 'a'.
    bool contains =
        lname.size() >= 3 &&
        (lc.find(lname) != std::string::npos ||
         (lc.size() >= 3 && 2 * lc.size() >= lname.size() && lname.find(lc) != std::string::npos));
    if (d <= limit || contains) scored.push_back({contains ? std::min(d, limit) : d, &c});
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const Scored& x, const Scored& y) { return x.score < y.score; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && out.size() < max; ++i) out.push_back(*scored[i].s);
  return out;
}

std::string QuoteList(const std::vector<std::string>& items, size_t max) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max; ++i) {
    if (i) out += ", ";
    out += "'" + items[i] + "'";
  }
  if (items.size() > max) out += ", ...";
  return out;
}

std::string DidYouMean(const std::vector<std::string>& near) {
  if (near.empty()) return "";
  std::string out = " (did you mean ";
  for (size_t i = 0; i < near.size(); ++i) {
    if (i) out += i + 1 == near.size() ? " or " : ", ";
    out += "'" + near[i] + "'";
  }
  return out + "?)";
}

std::string SuggestionSuffix(std::string_view name, const std::vector<std::string>& candidates) {
  if (std::string hint = DidYouMean(NearNames(name, candidates)); !hint.empty()) return hint;
  if (candidates.empty()) return " (there are none)";
  return " (available: " + QuoteList(candidates) + ")";
}

namespace {

// The length of the UTF-8 sequence starting at s[i], or 0 when it is not valid there.
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
  const auto c1 = n > 1 ? static_cast<unsigned char>(s[i + 1]) : 0;
  if ((n == 2 && c < 0xC2) || (n == 3 && c == 0xE0 && c1 < 0xA0) ||
      (n == 3 && c == 0xED && c1 >= 0xA0) || (n == 4 && c == 0xF0 && c1 < 0x90) ||
      (n == 4 && (c > 0xF4 || (c == 0xF4 && c1 >= 0x90))))
    return 0;
  return n;
}

}  // namespace

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceAt(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string PrintableLine(std::string_view s, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (out.size() >= max_bytes) return out + "...";
    const size_t n = Utf8SequenceAt(s, i);
    const auto c = static_cast<unsigned char>(s[i]);
    if (n == 0 || c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

namespace {

std::string FormatScaled(uint64_t bytes, double base, const char* const (&units)[5]) {
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= base && u < 4) {
    v /= base;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

std::string FormatBinaryBytes(uint64_t bytes) {
  static const char* const kUnits[5] = {"B", "KiB", "MiB", "GiB", "TiB"};
  return FormatScaled(bytes, 1024, kUnits);
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[5] = {"B", "KB", "MB", "GB", "TB"};
  return FormatScaled(bytes, 1000, kUnits);
}

void AppendJsonString(std::string* out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out->push_back('"');
  size_t start = 0;  // runs that need no escaping are copied whole
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + start, i - start);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
    start = i + 1;
  }
  out->append(s.data() + start, s.size() - start);
  out->push_back('"');
}

}  // namespace cellcube
