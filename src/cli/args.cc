#include "cli/args.h"

#include <charconv>

#include "util/text.h"

namespace cellcube::cli {

Result<Args> Args::Parse(const std::vector<std::string>& argv,
                         const std::vector<OptionSpec>& specs) {
  Args args;
  std::vector<std::string> known;
  for (const auto& s : specs) known.push_back("--" + s.name);
  bool only_positionals = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (only_positionals || a.size() < 2 || a[0] != '-' || a == "-") {
      args.positionals_.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positionals = true;
      continue;
    }
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (!spec)
      return Status::Usage("unknown option '" + a + "'" + SuggestionSuffix("--" + name, known));
    auto& slot = args.values_[name];
    if (!slot.empty() && !spec->repeatable)
      return Status::Usage("option '--" + name + "' given more than once");
    if (!spec->takes_value) {
      if (inline_value) return Status::Usage("option '--" + name + "' takes no value");
      slot.push_back("");
      continue;
    }
    if (inline_value) {
      slot.push_back(*inline_value);
    } else if (i + 1 < argv.size()) {
      slot.push_back(argv[++i]);
    } else {
      return Status::Usage("option '--" + name + "' needs a value");
    }
  }
  return args;
}

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::GetOr(const std::string& name, const std::string& fallback) const {
  return Get(name).value_or(fallback);
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

Result<int64_t> Args::GetInt(const std::string& name, int64_t fallback, int64_t lo,
                             int64_t hi) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || ptr != v->data() + v->size() || out < lo || out > hi)
    return Status::Usage("option '--" + name + "' needs an integer from " + std::to_string(lo) +
                         " to " + std::to_string(hi) + ", not '" + *v + "'");
  return out;
}

std::vector<std::string> ListOption(const Args& args, const char* name) {
  std::vector<std::string> out;
  for (const auto& v : args.GetAll(name))
    for (auto& item : SplitList(v)) {
      // "NKG7, GNLY" as typed: the spaces around an item are no part of it.
      const size_t first = item.find_first_not_of(" \t");
      if (first == std::string::npos) continue;
      out.push_back(item.substr(first, item.find_last_not_of(" \t") - first + 1));
    }
  return out;
}

Result<Population> PopulationOptions(const Args& args) {
  Population out;
  out.datasets = ListOption(args, "datasets");
  out.rollup = ListOption(args, "rollup");
  for (const auto& w : args.GetAll("where")) {
    const auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0) {
      const auto colon = w.find(':');
      std::string hint;
      if (eq == std::string::npos && colon != std::string::npos && colon > 0)
        hint = " (the command line takes COL=VALUE, e.g. --where '" + w.substr(0, colon) + "=" +
               w.substr(colon + 1) + "'; URLs take COL:VALUE)";
      return Status::Usage("--where needs COL=VALUE, not '" + w + "'" + hint);
    }
    out.where.push_back({w.substr(0, eq), {w.substr(eq + 1)}});
  }
  return out;
}

DatasetInput ParseDatasetInput(const std::string& arg) {
  DatasetInput in;
  auto eq = arg.find('=');
  if (eq != std::string::npos && eq > 0 && arg.find('/') > eq) {
    in.name = arg.substr(0, eq);
    in.path = arg.substr(eq + 1);
    return in;
  }
  in.path = arg;
  std::string base =
      arg.substr(arg.find_last_of('/') == std::string::npos ? 0 : arg.find_last_of('/') + 1);
  auto dot = base.rfind(".h5ad");
  in.name = dot != std::string::npos && dot + 5 == base.size() ? base.substr(0, dot) : base;
  return in;
}

}  // namespace cellcube::cli
