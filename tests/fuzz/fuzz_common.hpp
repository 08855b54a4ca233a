// Shared helpers for the libFuzzer targets in tests/fuzz (see run.sh and
// docs/reliability.md). The loaders under test take a path, so each input is written
// to a per-process temporary file first (tmpfs-speed: /dev/shm when it exists).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kitnn_fuzz {

inline std::string temp_path(const char* tag) {
    const char* dir = std::getenv("KITNN_FUZZ_TMP");
    std::string d = dir && *dir ? dir : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    return d + "/kitnn_fuzz_" + tag + "_" + std::to_string(static_cast<long>(getpid()));
}

// Writes [data, data+size) to path; aborts on I/O failure (a harness bug, not a finding).
inline void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::abort();
    }
}

}  // namespace kitnn_fuzz
