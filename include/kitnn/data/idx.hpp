// kitnn/data/idx.hpp — reading and writing IDX files (the MNIST format), raw or gzipped.
//
// An IDX file is a big-endian header followed by a dense array:
//
//   bytes 0-1  zero
//   byte  2    element type (0x08 = unsigned byte, the only type MNIST uses)
//   byte  3    number of dimensions D
//   then D big-endian uint32 sizes, then the product of the sizes elements, row-major.
//
// So MNIST images have magic 0x00000803 and sizes (N, rows, cols); labels have magic
// 0x00000801 and size (N). The files are usually shipped gzipped; we read both forms
// through zlib's gzread, which decompresses a stream that starts with the gzip magic
// bytes (1f 8b) and passes any other file through unchanged, so a file's *content*
// decides, never its name (a ".gz" that was already gunzipped still loads).
//
// A header is untrusted input: a corrupt one can promise terabytes. We therefore check
// every size before using it, compare the promised byte count with the real file size
// for raw files before allocating, and read gzipped payloads incrementally, so memory
// never grows past the data that is actually there. Every failure throws DataError
// whose message starts with the offending path, says what was expected and what was
// found, so a user can tell a truncated download from a wrong file.
#pragma once

#include "kitnn/core/tensor.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace kitnn::data {

namespace detail {
// Asks Linux for 2 MB pages (transparent huge pages) in [p, p + bytes), before the
// memory is first written; numpy does the same for its large arrays. Why: training
// reads images in random order from a buffer of 188 MB (MNIST, float), one 3 KB image
// per 4 KB page. On this project's VM the first read of each small page after other
// memory was allocated costs about 5 us (the hypervisor's page tables, invisible to the
// guest's counters): kitnn's first epoch of keck took 0.25 s more than the next ones,
// and disappears with huge pages (docs/performance.md). Anywhere, they also save TLB
// misses. Only the 2 MB-aligned interior is advised; a failure (THP disabled, another
// OS) just leaves normal pages.
inline void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::uintptr_t kHuge = std::uintptr_t(1) << 21;
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t begin = (a + kHuge - 1) & ~(kHuge - 1), end = (a + bytes) & ~(kHuge - 1);
    if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}
}  // namespace detail

struct DataError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Dataset {
    kitnn::Tensor<float> images;       // (N, 1, rows, cols), pixels scaled to [0,1]
    std::vector<std::uint8_t> labels;  // N labels
    Eigen::Index size() const { return images.dimension(0); }  // N
};

struct Mnist {
    Dataset train, test;
};

constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dims
constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dim
// Largest size accepted for any dimension but the first (rows, cols, ...). Real data
// sets are far below it; a larger value almost surely means a corrupt header.
constexpr std::uint32_t kIdxMaxSide = 4096;

namespace detail {

inline std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
    return buf;
}

// Bytes per element for an IDX type code, 0 if the code is not an IDX type.
inline int idx_element_size(std::uint32_t type) {
    switch (type) {
        case 0x08: case 0x09: return 1;  // unsigned / signed byte
        case 0x0B: return 2;             // short
        case 0x0C: case 0x0D: return 4;  // int / float
        case 0x0E: return 8;             // double
        default: return 0;
    }
}

// "IDX unsigned bytes, 3 dims" or "not an IDX header": turns a bare hex number in an
// error message into something a user can act on (e.g. labels file passed as images).
inline std::string describe_magic(std::uint32_t m) {
    const std::uint32_t type = (m >> 8) & 0xff, nd = m & 0xff;
    if ((m >> 16) != 0 || idx_element_size(type) == 0 || nd == 0) return "not an IDX header";
    // indexed by type - 0x08: 0x08 ubyte, 0x09 byte, (0x0A unused), 0x0B short, 0x0C int,
    // 0x0D float, 0x0E double
    static const char* names[] = {"unsigned bytes", "signed bytes", "?", "int16",
                                  "int32", "float32", "float64"};
    return std::string("IDX ") + names[type - 0x08] + ", " + std::to_string(nd) +
           (nd == 1 ? " dim" : " dims");
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::uint32_t load_be32(const unsigned char* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}

inline void store_be32(unsigned char* p, std::uint32_t v) {
    p[0] = static_cast<unsigned char>(v >> 24);
    p[1] = static_cast<unsigned char>(v >> 16);
    p[2] = static_cast<unsigned char>(v >> 8);
    p[3] = static_cast<unsigned char>(v);
}

// A file opened with zlib for reading: gzip streams are decompressed, anything else
// is read as is. RAII so every throw closes the file.
class GzReader {
public:
    explicit GzReader(const std::string& path) : path_(path) {
        // Check first with the filesystem: gzopen on a directory "succeeds" on Linux and
        // only the first read fails, with a less helpful message.
        std::error_code ec;
        const auto st = std::filesystem::status(path, ec);
        if (!std::filesystem::exists(st))
            throw DataError(path + ": cannot open: " + std::strerror(ENOENT));
        if (std::filesystem::is_directory(st))
            throw DataError(path + ": is a directory, not an IDX file");
        errno = 0;
        f_ = gzopen(path.c_str(), "rb");
        if (!f_)
            throw DataError(path + ": cannot open: " +
                            (errno ? std::strerror(errno) : "out of memory in zlib"));
        gzbuffer(f_, 1 << 17);  // bigger than zlib's 8 KiB default: fewer read() calls
    }
    ~GzReader() {
        if (f_) gzclose(f_);
    }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    // Reads up to n bytes; fewer only at the end of the data. Throws on corrupt gzip.
    std::size_t read(void* dst, std::size_t n) {
        auto* out = static_cast<unsigned char*>(dst);
        std::size_t done = 0;
        while (done < n) {
            // gzread takes an unsigned and returns an int: keep each call well below INT_MAX.
            const unsigned want = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
            const int got = gzread(f_, out + done, want);
            if (got < 0) {
                int err = 0;
                const char* msg = gzerror(f_, &err);
                throw DataError(path_ + ": corrupt gzip data after " + std::to_string(total_ + done) +
                                " decompressed bytes: " + (err == Z_ERRNO ? std::strerror(errno) : msg));
            }
            done += static_cast<std::size_t>(got);
            if (static_cast<unsigned>(got) < want) break;  // end of data
        }
        total_ += done;
        return done;
    }

    // True when the gzip stream ended before its end marker (a cut-off download):
    // zlib then returns what it could decompress and records Z_BUF_ERROR.
    bool gzip_cut_short() const {
        int err = 0;
        gzerror(f_, &err);
        return err == Z_BUF_ERROR;
    }

    // True for a raw (not gzipped) file. Only meaningful after the first read.
    bool is_raw() const { return gzdirect(f_) != 0; }

private:
    std::string path_;
    gzFile f_ = nullptr;
    std::uint64_t total_ = 0;  // decompressed bytes read so far
};

// "truncated at byte N: <needs>", plus a hint when the gzip stream itself is cut off.
inline DataError truncated(const std::string& path, std::uint64_t at, const std::string& needs,
                           bool cut_gzip) {
    return DataError(path + ": truncated at byte " + std::to_string(at) + ": " + needs +
                     (cut_gzip ? "; the gzip stream itself is cut short (incomplete download?)" : ""));
}

}  // namespace detail

// Reads an IDX file whose magic must equal `magic`; fills `dims` with its sizes and
// returns the payload bytes (big-endian elements, as stored; for MNIST simply bytes).
inline std::vector<std::uint8_t> read_idx_bytes(const std::string& path, std::uint32_t magic,
                                                std::vector<std::uint32_t>& dims) {
    using detail::hex32;
    const std::uint32_t ndims = magic & 0xff;
    const int elem = detail::idx_element_size((magic >> 8) & 0xff);
    if ((magic >> 16) != 0 || elem == 0 || ndims == 0 || ndims > 16)
        throw DataError(path + ": read_idx_bytes called with invalid IDX magic " + hex32(magic));

    detail::GzReader in(path);
    const std::uint64_t header_bytes = 4 + 4ull * ndims;
    const std::string header_needs = "an IDX header with " + std::to_string(ndims) + " dims needs " +
                                     std::to_string(header_bytes) + " bytes";

    unsigned char m[4];
    std::size_t got = in.read(m, 4);
    if (got < 4)
        throw detail::truncated(path, got, header_needs, in.gzip_cut_short());
    const std::uint32_t found = detail::load_be32(m);
    if (found != magic)
        throw DataError(path + ": bad magic number: expected " + hex32(magic) + " (" +
                        detail::describe_magic(magic) + "), found " + hex32(found) + " (" +
                        detail::describe_magic(found) + ")");

    std::vector<unsigned char> hdr(4ull * ndims);
    got = in.read(hdr.data(), hdr.size());
    if (got < hdr.size())
        throw detail::truncated(path, 4 + got, header_needs, in.gzip_cut_short());

    // Validate each size before using it: zero means an empty (or zeroed) header, and
    // a per-item size beyond kIdxMaxSide means garbage. The product is checked for
    // overflow too (possible only with many dimensions).
    dims.assign(ndims, 0);
    std::uint64_t count = 1;
    for (std::uint32_t d = 0; d < ndims; ++d) {
        dims[d] = detail::load_be32(&hdr[4 * d]);
        if (dims[d] == 0)
            throw DataError(path + ": dimension " + std::to_string(d) + " of " + std::to_string(ndims) +
                            " is 0 in the header: an IDX file must not be empty");
        if (d > 0 && dims[d] > kIdxMaxSide)
            throw DataError(path + ": dimension " + std::to_string(d) + " is " + std::to_string(dims[d]) +
                            ", more than the " + std::to_string(kIdxMaxSide) +
                            " this reader accepts (corrupt header?)");
        if (count > std::numeric_limits<std::uint64_t>::max() / 8 / dims[d])
            throw DataError(path + ": header sizes overflow (corrupt header?)");
        count *= dims[d];
    }
    const std::uint64_t payload = count * static_cast<std::uint64_t>(elem);
    const std::uint64_t promised = header_bytes + payload;
    std::string shape;
    for (std::uint32_t d = 0; d < ndims; ++d) shape += (d ? " x " : "") + std::to_string(dims[d]);
    const std::string what = std::to_string(header_bytes) + "-byte header + " + std::to_string(payload) +
                             " bytes of data for " + shape;
    const std::string promises = "header promises " + std::to_string(promised) + " bytes (" + what;

    // Raw file: its size is known, so a lying header is caught before any allocation.
    if (in.is_raw()) {
        std::error_code ec;
        const std::uint64_t size = std::filesystem::file_size(path, ec);
        if (!ec && size < promised) throw detail::truncated(path, size, promises + ")", false);
        if (!ec && size > promised)
            throw DataError(path + ": has " + std::to_string(size - promised) + " trailing bytes: " +
                            promises + ") but the file has " + std::to_string(size));
    }
    if (payload > std::numeric_limits<std::size_t>::max())
        throw DataError(path + ": header promises " + std::to_string(promised) +
                        " bytes, more than this machine can address");

    // Read in chunks; for gzip the final size is unknown until the end, so the reserve
    // is capped and the vector only grows with data that really arrives.
    constexpr std::size_t kChunk = std::size_t(1) << 20;
    constexpr std::uint64_t kMaxReserve = std::uint64_t(256) << 20;
    std::vector<std::uint8_t> data;
    data.reserve(static_cast<std::size_t>(in.is_raw() ? payload : std::min(payload, kMaxReserve)));
    while (data.size() < payload) {
        const std::size_t old = data.size();
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, payload - old));
        data.resize(old + want);
        const std::size_t n = in.read(data.data() + old, want);
        data.resize(old + n);
        if (n < want)
            throw detail::truncated(path, header_bytes + data.size(),
                                    promises + (in.is_raw() ? ")" : ", after decompression)"),
                                    in.gzip_cut_short());
    }

    // Anything after the promised bytes means the header and the data disagree
    // (wrong file, or two files concatenated): count it, without keeping it.
    std::uint64_t trailing = 0;
    unsigned char scratch[1 << 14];
    while ((got = in.read(scratch, sizeof scratch)) > 0) trailing += got;
    if (trailing > 0)
        throw DataError(path + ": has " + std::to_string(trailing) + " trailing bytes: " + promises +
                        ") but the " +
                        (in.is_raw() ? "file" : "decompressed data") + " has " +
                        std::to_string(promised + trailing));
    if (in.gzip_cut_short())
        throw DataError(path + ": gzip stream is cut short after all " + std::to_string(promised) +
                        " bytes of data (missing gzip trailer: incomplete download?)");
    return data;
}

// Loads an images file (N, rows, cols) and a labels file (N) into a Dataset.
inline Dataset load_idx(const std::string& images_path, const std::string& labels_path) {
    std::vector<std::uint32_t> idims, ldims;
    // Labels first: a missing or broken labels file is reported before the (much
    // larger) images are read.
    std::vector<std::uint8_t> labels = read_idx_bytes(labels_path, kIdxLabelsMagic, ldims);
    std::vector<std::uint8_t> pixels = read_idx_bytes(images_path, kIdxImagesMagic, idims);
    if (idims[0] != ldims[0])
        throw DataError(images_path + ": " + std::to_string(idims[0]) + " images vs " +
                        std::to_string(ldims[0]) + " labels in " + labels_path);

    Dataset ds;
    ds.images.resize(Eigen::Index(idims[0]), 1, Eigen::Index(idims[1]), Eigen::Index(idims[2]));
    float* dst = ds.images.data();
    detail::advise_huge_pages(dst, pixels.size() * sizeof(float));  // before the first write
    // Multiplying by 1/255 is not always the correctly rounded quotient; divide, so that
    // std::lround(x * 255) gives back exactly the stored byte.
    for (std::size_t i = 0; i < pixels.size(); ++i) dst[i] = static_cast<float>(pixels[i]) / 255.0f;
    ds.labels = std::move(labels);
    return ds;
}

// The stems of the four MNIST files, without the optional ".gz".
inline const std::vector<std::string>& mnist_file_stems() {
    static const std::vector<std::string> stems = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    return stems;
}

// dir/stem if it is a file, else dir/stem.gz if it is, else "". The raw file wins when
// both exist: it loads faster and a user who gunzipped it meant it to be used.
inline std::string find_idx_file(const std::string& dir, const std::string& stem) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const char* ext : {"", ".gz"}) {
        const fs::path p = fs::path(dir) / (stem + ext);
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    return {};
}

namespace detail {
inline std::vector<std::string> missing_mnist_files(const std::string& dir) {
    std::vector<std::string> missing;
    for (const auto& s : mnist_file_stems())
        if (find_idx_file(dir, s).empty()) missing.push_back(s + "[.gz]");
    return missing;
}

inline std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

inline std::string mnist_how_to_get(const std::string& dir) {
    return "To get MNIST (the script verifies each file's SHA-256):\n"
           "  download from the public mirrors:  scripts/download_mnist.sh --dir " + dir + "\n"
           "  copy from a local folder SRC:      scripts/download_mnist.sh --from SRC --dir " + dir + "\n"
           "or use a folder that already has the four files: --data DIR, or KITNN_MNIST_DIR=DIR.";
}

// " (<source>)", plus the absolute path for a relative folder: the default data/mnist
// is relative to the current directory, a common surprise when running from a build folder.
inline std::string where(const std::string& dir, const std::string& source) {
    std::error_code ec;
    const auto p = std::filesystem::path(dir);
    const auto abs = std::filesystem::absolute(p, ec);
    if (p.is_absolute() || ec) return " (" + source + ")";
    return " (" + source + ", here " + abs.lexically_normal().string() + ")";
}
}  // namespace detail

// Finds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... in dir.
inline Mnist load_mnist(const std::string& dir) {
    const auto missing = detail::missing_mnist_files(dir);
    if (!missing.empty())
        throw DataError(dir + ": MNIST files missing: " + detail::join(missing, ", ") + ".\n" +
                        detail::mnist_how_to_get(dir));
    const auto& s = mnist_file_stems();
    Mnist m;
    m.train = load_idx(find_idx_file(dir, s[0]), find_idx_file(dir, s[1]));
    m.test = load_idx(find_idx_file(dir, s[2]), find_idx_file(dir, s[3]));

    // MNIST-specific checks a generic IDX reader cannot make: ten classes, and one
    // image size for both splits (a model is built for one input shape).
    auto check_labels = [](const Dataset& d, const std::string& path) {
        for (std::size_t i = 0; i < d.labels.size(); ++i)
            if (d.labels[i] > 9)
                throw DataError(path + ": label " + std::to_string(d.labels[i]) + " at index " +
                                std::to_string(i) + " is not a digit 0-9");
    };
    check_labels(m.train, find_idx_file(dir, s[1]));
    check_labels(m.test, find_idx_file(dir, s[3]));
    if (m.train.images.dimension(2) != m.test.images.dimension(2) ||
        m.train.images.dimension(3) != m.test.images.dimension(3))
        throw DataError(find_idx_file(dir, s[2]) + ": test images are " +
                        std::to_string(m.test.images.dimension(2)) + "x" +
                        std::to_string(m.test.images.dimension(3)) + " but training images are " +
                        std::to_string(m.train.images.dimension(2)) + "x" +
                        std::to_string(m.train.images.dimension(3)));
    return m;
}

// The data folder: `flag` if non-empty, else $KITNN_MNIST_DIR, else "data/mnist".
// Throws DataError, saying how to get the files, if the chosen folder lacks them.
inline std::string find_mnist_dir(const std::string& flag) {
    std::string dir, source;
    const char* env = std::getenv("KITNN_MNIST_DIR");
    if (!flag.empty()) {
        dir = flag;
        source = "given with --data";
    } else if (env && *env) {
        dir = env;
        source = "from KITNN_MNIST_DIR";
    } else {
        dir = "data/mnist";
        source = "the default folder";
    }
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw DataError(dir + ": MNIST folder does not exist" + detail::where(dir, source) + ".\n" +
                        detail::mnist_how_to_get(dir));
    const auto missing = detail::missing_mnist_files(dir);
    if (!missing.empty())
        throw DataError(dir + ": MNIST files missing" + detail::where(dir, source) + ": " +
                        detail::join(missing, ", ") + ".\n" + detail::mnist_how_to_get(dir));
    return dir;
}

namespace detail {
// Writes header + payload, gzipped when the path ends in ".gz". On failure the partial
// file is removed, so a later read never mistakes it for data.
inline void write_idx(const std::string& path, std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                      const std::uint8_t* data, std::size_t n) {
    std::vector<unsigned char> header(4 + 4 * dims.size());
    store_be32(header.data(), magic);
    for (std::size_t d = 0; d < dims.size(); ++d) store_be32(&header[4 + 4 * d], dims[d]);

    auto fail = [&](const std::string& why) {
        std::remove(path.c_str());
        return DataError(path + ": cannot write: " + why);
    };
    if (ends_with(path, ".gz")) {
        errno = 0;
        gzFile f = gzopen(path.c_str(), "wb");
        if (!f) throw fail(errno ? std::strerror(errno) : "zlib out of memory");
        bool ok = gzwrite(f, header.data(), static_cast<unsigned>(header.size())) == int(header.size());
        for (std::size_t off = 0; ok && off < n;) {
            const unsigned len = static_cast<unsigned>(std::min<std::size_t>(n - off, 1u << 30));
            ok = gzwrite(f, data + off, len) == int(len);
            off += len;
        }
        int err = 0;
        const std::string msg = ok ? "" : gzerror(f, &err);
        const int closed = gzclose(f);  // flushes: a full disk shows up here
        if (!ok || closed != Z_OK) throw fail(ok ? "gzclose failed (disk full?)" : msg);
    } else {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) throw fail(std::strerror(errno));
        errno = 0;
        const bool written = std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
                             (n == 0 || std::fwrite(data, 1, n, f) == n);
        const int write_errno = errno;
        errno = 0;
        const bool closed = std::fclose(f) == 0;  // flushes: a full disk shows up here
        if (!written || !closed) {
            const int e = !written ? write_errno : errno;
            throw fail(e ? std::strerror(e) : "write failed");
        }
    }
}
}  // namespace detail

// Writing (used by tests and tools): raw IDX, or gzip if path ends in ".gz". Refuses
// to write what read_idx_bytes would reject, so written files always load.
inline void write_idx_images(const std::string& path, const std::vector<std::uint8_t>& pixels,
                             std::uint32_t n, std::uint32_t rows, std::uint32_t cols) {
    if (n == 0 || rows == 0 || cols == 0 || rows > kIdxMaxSide || cols > kIdxMaxSide)
        throw DataError(path + ": cannot write " + std::to_string(n) + " images of " + std::to_string(rows) +
                        "x" + std::to_string(cols) + ": sizes must be nonzero and rows/cols <= " +
                        std::to_string(kIdxMaxSide));
    const std::uint64_t expected = std::uint64_t(n) * rows * cols;
    if (pixels.size() != expected)
        throw DataError(path + ": write_idx_images got " + std::to_string(pixels.size()) + " pixels for " +
                        std::to_string(n) + " x " + std::to_string(rows) + " x " + std::to_string(cols) +
                        " = " + std::to_string(expected));
    detail::write_idx(path, kIdxImagesMagic, {n, rows, cols}, pixels.data(), pixels.size());
}

inline void write_idx_labels(const std::string& path, const std::vector<std::uint8_t>& labels) {
    if (labels.empty() || labels.size() > std::numeric_limits<std::uint32_t>::max())
        throw DataError(path + ": cannot write " + std::to_string(labels.size()) +
                        " labels: an IDX labels file holds 1 to 2^32-1 labels");
    detail::write_idx(path, kIdxLabelsMagic, {static_cast<std::uint32_t>(labels.size())}, labels.data(),
                      labels.size());
}

}  // namespace kitnn::data
