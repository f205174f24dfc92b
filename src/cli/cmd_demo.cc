// `cellcube demo`: the whole job on an embedded default. Synthesises a realistic atlas,
// builds its store (with a progress bar) and serves it, printing the URL to open.
// Reuses what an earlier run left in the demo directory.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/demo_ontologies.h"

namespace cellcube::cli {

const char* const kDemoHelp =
    "usage: cellcube demo [--port 8080] [--host 127.0.0.1] [--dir demo-data] [--datasets 4]\n"
    "                     [--cells 30000]\n\n"
    "Writes a synthetic atlas (DIR/h5ad/synth_*.h5ad: several datasets of tens of thousands\n"
    "of cells with real marker genes, tissues, a disease with cancer stages, donors), builds\n"
    "DIR/atlas.h5ad from it with the Cell Ontology, UBERON and MONDO terms its labels use\n"
    "(embedded: data/ontology), and serves it: open the printed URL. Files from an earlier run\n"
    "with the same settings are reused; delete DIR to start over.\n\n"
    "  --port N       TCP port to serve on (default 8080)\n"
    "  --host ADDR    address to listen on (default 127.0.0.1)\n"
    "  --dir DIR      where the demo files go (default demo-data)\n"
    "  --datasets N   datasets to synthesise (default 4)\n"
    "  --cells N      cells per dataset (default 30000)\n";

namespace {

// The embedded term maps (data/ontology) written out for the build, whose --ontology
// reads files: the Cell Ontology, UBERON and MONDO subsets the catalogue uses.
Result<std::vector<std::string>> WriteDemoOntologies(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("cannot create '" + dir.string() + "': " + ec.message());
  std::vector<std::string> paths;
  for (const EmbeddedFile& f : DemoOntologies()) {
    const std::filesystem::path path = dir / f.name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(f.bytes.data(), static_cast<std::streamsize>(f.bytes.size()));
    out.close();
    if (!out) return Status::IoError("cannot write '" + path.string() + "'");
    paths.push_back(path.string());
  }
  return paths;
}

}  // namespace

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
  // "-terms": inputs with CELLxGENE term id columns, a store with ontologies (older
  // demos' files, without them, are left alone).
  const std::string shape = std::to_string(datasets) + "x" + std::to_string(cells) + "-terms";
  const fs::path inputs = dir / ("h5ad-" + shape);
  const fs::path store = dir / ("atlas-" + shape + ".h5ad");
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
    CC_RETURN_IF_ERROR(
        RunSynth({"-o", inputs.string(), "--datasets", std::to_string(datasets), "--cells",
                  std::to_string(cells), "--genes", "3000", "--term-ids"}));
  } else {
    std::cerr << "1/3 reusing the datasets in " << inputs.string() << "\n";
  }
  if (!fs::exists(store) || !have_inputs) {
    std::cerr << "2/3 building " << store.string() << "\n";
    std::vector<std::string> build = {"-o", store.string()};
    CC_ASSIGN_OR_RETURN(std::vector<std::string> maps, WriteDemoOntologies(dir / "ontology"));
    for (const auto& map : maps) {
      build.push_back("--ontology");
      build.push_back(map);
    }
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
