// libFuzzer target: the h5ad reader on arbitrary file bytes. Opens the file, reads
// obs/var descriptions, every column and index of obs and of each matrix's var, streams
// every matrix block by block, and samples values. Any error must come back as a
// Status; a crash, a sanitizer report, a leak or a hang is a finding.
#include <cstddef>
#include <cstdint>

#include "cellcube/h5ad.h"
#include "common.h"

using namespace cellcube;

namespace {

void ReadFrame(const h5ad::File& file, const Result<h5ad::DataFrameInfo>& info, bool obs,
               const std::string& matrix) {
  if (!info.ok()) return;
  for (const auto& name : info->column_names) {
    auto col = obs ? file.ReadObsColumn(name) : file.ReadVarColumn(name, matrix);
    if (col.ok()) {
      (void)col->CountMissing();
      (void)col->CountDistinctPresent();
    }
  }
  if (obs) {
    (void)file.ReadObsIndex();
  } else {
    (void)file.ReadVarIndex(matrix);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::InputFile input;
  const std::string& path = input.Write(data, size);
  auto file = h5ad::File::Open(path);
  if (!file.ok()) return 0;
  const h5ad::File& f = **file;
  ReadFrame(f, f.ObsInfo(), true, "");
  (void)f.ResolveMatrix("auto");
  for (const auto& m : f.matrices()) {
    ReadFrame(f, f.VarInfo(m.path), false, m.path);
    (void)f.SampleValues(m.path, 1000);
    for (bool direct : {true, false}) {
      h5ad::StreamOptions options;
      options.target_values = 4096;
      options.direct_reads = direct;
      auto stream = f.StreamMatrix(m.path, options);
      if (!stream.ok()) continue;
      SparseBlock block;
      for (;;) {
        auto more = (*stream)->Next(&block);
        if (!more.ok() || !*more) break;
      }
    }
  }
  return 0;
}
