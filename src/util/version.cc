#include "util/version.h"

namespace cellcube {

const char* Version() { return CELLCUBE_VERSION; }

}  // namespace cellcube
