// Test tool: `cellcube-write-sample OUT.h5ad` writes the writer's sample file
// (writer_sample.h) so that tests/python can check it with anndata.
#include <iostream>

#include "writer_sample.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: cellcube-write-sample OUT.h5ad\n";
    return 2;
  }
  cellcube::Status s = cellcube::testing::WriteSampleFile(argv[1]);
  if (!s.ok()) {
    std::cerr << "cellcube-write-sample: error: " << s.message() << "\n";
    return 1;
  }
  return 0;
}
