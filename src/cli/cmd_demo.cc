// `cellcube demo`: the whole job on an embedded default. Synthesises a realistic atlas,
// builds its store (with a progress bar) and serves it, printing the URL to open.
// Reuses what an earlier run left in the demo directory.
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"

namespace cellcube::cli {

const char* const kDemoHelp =
    "usage: cellcube demo [--port 8080] [--dir demo-data] [--datasets 4] [--cells 30000]\n\n"
    "Writes a synthetic atlas (DIR/h5ad/synth_*.h5ad: several datasets of tens of thousands\n"
    "of cells with real marker genes, tissues, a disease with cancer stages, donors), builds\n"
    "DIR/atlas.h5ad from it, and serves it: open the printed URL. Files from an earlier run\n"
    "with the same settings are reused; delete DIR to start over.\n\n"
    "  --port N       TCP port to serve on (default 8080)\n"
    "  --host ADDR    address to listen on (default 127.0.0.1)\n"
    "  --dir DIR      where the demo files go (default demo-data)\n"
    "  --datasets N   datasets to synthesise (default 4)\n"
    "  --cells N      cells per dataset (default 30000)\n";

Status RunDemo(const std::vector<std::string>& argv) {
  namespace fs = std::filesystem;
  CC_ASSIGN_OR_RETURN(
      Args args,
      Args::Parse(
          argv,
          {{"port", true}, {"host", true}, {"dir", true}, {"datasets", true}, {"cells", true}}));
  if (!args.positionals().empty()) return Status::Usage("demo takes no positional arguments");
  CC_ASSIGN_OR_RETURN(int64_t datasets, args.GetInt("datasets", 4, 1, 99));
  CC_ASSIGN_OR_RETURN(int64_t cells, args.GetInt("cells", 30000, 100, 10000000));
  const fs::path dir = args.GetOr("dir", "demo-data");
  // The settings name the input folder, so changed settings never reuse stale files.
  const fs::path inputs = dir / ("h5ad-" + std::to_string(datasets) + "x" + std::to_string(cells));
  const fs::path store =
      dir / ("atlas-" + std::to_string(datasets) + "x" + std::to_string(cells) + ".h5ad");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError("cannot create '" + dir.string() + "': " + ec.message());

  std::vector<std::string> files;
  for (int64_t i = 1; i <= datasets; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "synth_%02lld.h5ad", static_cast<long long>(i));
    files.push_back((inputs / name).string());
  }
  bool have_inputs = true;
  for (const auto& f : files) have_inputs = have_inputs && fs::exists(f);
  if (!have_inputs) {
    std::cerr << "1/3 synthesising " << datasets << " datasets of " << cells << " cells into "
              << inputs.string() << "\n";
    CC_RETURN_IF_ERROR(RunSynth({"-o", inputs.string(), "--datasets", std::to_string(datasets),
                                 "--cells", std::to_string(cells), "--genes", "3000"}));
  } else {
    std::cerr << "1/3 reusing the datasets in " << inputs.string() << "\n";
  }
  if (!fs::exists(store) || !have_inputs) {
    std::cerr << "2/3 building " << store.string() << "\n";
    std::vector<std::string> build = {"-o", store.string()};
    build.insert(build.end(), files.begin(), files.end());
    CC_RETURN_IF_ERROR(RunBuild(build));
  } else {
    std::cerr << "2/3 reusing the store " << store.string() << "\n";
  }
  std::cerr << "3/3 serving (Ctrl-C stops)\n";
  return RunServe({store.string(), "--port", args.GetOr("port", "8080"), "--host",
                   args.GetOr("host", "127.0.0.1")});
}

}  // namespace cellcube::cli
