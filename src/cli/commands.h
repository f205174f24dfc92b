// The subcommands of `cellcube`. Each parses its own arguments and returns a Status;
// main() alone turns a Status into an error line and an exit code.
#pragma once

#include <string>
#include <vector>

#include "cellcube/status.h"

namespace cellcube::cli {

struct Command {
  const char* name;
  const char* summary;
  const char* help;  // full --help text
  Status (*run)(const std::vector<std::string>& argv);
  // Reads files the user names (untrusted HDF5): runs in a child process under a memory
  // limit, so that a libhdf5 crash on a damaged file becomes one error line.
  bool isolated;
};

const std::vector<Command>& Commands();

Status RunInspect(const std::vector<std::string>& argv);
extern const char* const kInspectHelp;
Status RunSynth(const std::vector<std::string>& argv);
extern const char* const kSynthHelp;
Status RunBuild(const std::vector<std::string>& argv);
extern const char* const kBuildHelp;
Status RunAdd(const std::vector<std::string>& argv);
extern const char* const kAddHelp;
Status RunRemove(const std::vector<std::string>& argv);
extern const char* const kRemoveHelp;
Status RunMerge(const std::vector<std::string>& argv);
extern const char* const kMergeHelp;
Status RunInfo(const std::vector<std::string>& argv);
extern const char* const kInfoHelp;
Status RunServe(const std::vector<std::string>& argv);
extern const char* const kServeHelp;
Status RunDemo(const std::vector<std::string>& argv);
extern const char* const kDemoHelp;
Status RunQuery(const std::vector<std::string>& argv);
extern const char* const kQueryHelp;
Status RunDistribution(const std::vector<std::string>& argv);
extern const char* const kDistributionHelp;
Status RunDe(const std::vector<std::string>& argv);
extern const char* const kDeHelp;
Status RunMarkers(const std::vector<std::string>& argv);
extern const char* const kMarkersHelp;

}  // namespace cellcube::cli
