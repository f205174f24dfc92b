// A small command-line parser: `--flag`, `--opt VALUE`, `--opt=VALUE`, repeatable
// options, and positionals, with one clear usage error for anything unknown.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "cellcube/status.h"
#include "cellcube/store.h"
#include "util/text.h"

namespace cellcube::cli {

struct OptionSpec {
  std::string name;  // without the dashes: "json"
  bool takes_value;  // false for flags
  bool repeatable = false;
};

class Args {
 public:
  // Parses `argv` (after the subcommand) against `specs`.
  static Result<Args> Parse(const std::vector<std::string>& argv,
                            const std::vector<OptionSpec>& specs);

  bool Flag(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  // An integer option within [lo, hi], or `fallback` when absent.
  Result<int64_t> GetInt(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

// A command-line input "NAME=PATH" or "PATH" (name = the file stem, less ".h5ad"). An
// '=' after a '/' belongs to the path.
DatasetInput ParseDatasetInput(const std::string& arg);

// Every item of the comma lists given to option `name` (--genes A,B --genes C: A, B, C),
// without the spaces around it (--genes "A, B": A, B); empty items dropped.
std::vector<std::string> ListOption(const Args& args, const char* name);

// The population of --datasets D,... and every --where COL=VALUE (split at the first
// '='): the one parser of query, de and markers. Usage error for a --where without '=',
// with a hint when it looks like the URL form COL:VALUE.
Result<Population> PopulationOptions(const Args& args);

using cellcube::SplitList;  // from util/text.h

}  // namespace cellcube::cli
