// kitnn/io/atomic_file.hpp — crash-safe file writes, for models, checkpoints,
// histories and every other file the programs write.
//
// write_file_atomic writes "path.tmp.<pid>" in the same folder, fsyncs it, renames it
// over `path` and fsyncs the folder: a crash or power cut leaves either the old file
// or the complete new one, never half of one. On failure the temporary is removed.
// Many files at once (mnist_export's 10,000 PNGs): pass durable = false to each write
// (still written to a temporary and renamed, so no reader sees half a file) and call
// sync_files once at the end, which flushes them all with one syncfs: two fsyncs per
// file made 10,000 PNGs take about 70 s.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace kitnn {

// A file could not be written or read; the message starts with the path.
struct FileError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
// durable = false skips both fsyncs: call sync_files(folder) when the batch is written.
inline void write_file_atomic(const std::string& path, const std::vector<char>& bytes, bool durable = true) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw FileError(path + ": cannot create " + tmp + ": " + std::strerror(errno));
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t k = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (k < 0) {
            if (errno == EINTR) continue;
            const std::string err = std::strerror(errno);
            ::close(fd);
            std::remove(tmp.c_str());
            throw FileError(path + ": write failed: " + err);
        }
        done += size_t(k);
    }
    // Always close, even when fsync fails (fit() may retry every epoch: no fd leak).
    const int sync_rc = durable ? ::fsync(fd) : 0;
    const int sync_errno = errno;
    const int close_rc = ::close(fd);
    if (sync_rc != 0 || close_rc != 0) {
        const std::string err = std::strerror(sync_rc != 0 ? sync_errno : errno);
        std::remove(tmp.c_str());
        throw FileError(path + ": cannot flush " + tmp + ": " + err);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string err = std::strerror(errno);
        std::remove(tmp.c_str());
        throw FileError(path + ": cannot rename " + tmp + " into place: " + err);
    }
    if (!durable) return;
    // Make the rename durable too: fsync the folder that holds the new entry.
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);  // best effort: some filesystems refuse fsync on folders
        ::close(dfd);
    }
}

inline void write_file_atomic(const std::string& path, const std::string& text, bool durable = true) {
    write_file_atomic(path, std::vector<char>(text.begin(), text.end()), durable);
}

// Makes every file written into `folder` (with durable = false) durable: one syncfs of
// the folder's filesystem (its data and metadata, the new folder entries included),
// then an fsync of the folder itself. Throws FileError when the folder cannot be opened
// or the flush fails.
inline void sync_files(const std::string& folder) {
    const int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0) throw FileError(folder + ": cannot open to flush it: " + std::strerror(errno));
    const int rc = ::syncfs(dfd);
    const int err = errno;
    ::fsync(dfd);  // best effort, as in write_file_atomic
    ::close(dfd);
    if (rc != 0) throw FileError(folder + ": cannot flush its files: " + std::strerror(err));
}

}  // namespace kitnn
