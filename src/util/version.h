// cellcube's version, from CMake's project(VERSION) (defined for util only, once).
#pragma once

namespace cellcube {

// "0.2.0": what `cellcube --version` prints, what a store's created_by names and what
// the server's ETags carry.
const char* Version();

}  // namespace cellcube
