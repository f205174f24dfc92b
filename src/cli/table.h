// Aligned plain-text tables for terminal output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace cellcube::cli {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Writes the header, a rule and the rows, each cell padded to its column's width;
  // columns listed in `right_aligned` (by index) are aligned right (numbers).
  void Print(std::ostream& out, const std::vector<size_t>& right_aligned = {},
             const std::string& indent = "  ") const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// 1234567 -> "1,234,567"
std::string WithThousands(int64_t n);

}  // namespace cellcube::cli
