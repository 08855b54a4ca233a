// kitnn/version.hpp — the version of kitnn: the one place it is written. CMake's
// project(VERSION) is read from this file (CMakeLists.txt), and every program answers
// --version with it (examples/cli.hpp).
#pragma once

#define KITNN_VERSION_MAJOR 0
#define KITNN_VERSION_MINOR 1
#define KITNN_VERSION_PATCH 0
#define KITNN_VERSION_STRING "0.1.0"
