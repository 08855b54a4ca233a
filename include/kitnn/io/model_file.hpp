// kitnn/io/model_file.hpp — save and load a Sequential: architecture + weights.
//
// Format version 1 (all integers little-endian; documented in docs/model-format.md):
//   magic      8 bytes  "KITNNMOD"
//   version    u32      1
//   scalar     u32      4 = float32, 8 = float64
//   metadata   u32 count, then count x (str key, str value)
//   input      u32 rank, then rank x i64 dims (C,H,W or F)
//   layers     u32 count, then per layer:
//                str type, u32 n, n x (str key, str value)      hyperparameters
//                u32 tensors, per tensor: str name, 4 x i64 dims, data (scalar)
//   checksum   u32      CRC-32 (zlib) of every byte before it
// where str = u32 length + bytes. The reader checks the length, magic, version,
// scalar type and checksum before parsing, then bounds-checks every field, so a
// truncated or corrupted file gives a clear error, and hyperparameters are checked
// against the bytes left in the file before a layer allocates its weights.
// save_model writes "path.tmp.<pid>", fsyncs it, renames it over `path` and fsyncs the
// folder: a crash
// leaves either the old file or the new one, never half of one.
#pragma once

#include "kitnn/io/atomic_file.hpp"
#include "kitnn/io/layer_factory.hpp"
#include "kitnn/model/sequential.hpp"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

namespace kitnn {

struct ModelFileError : FileError {
    using FileError::FileError;
};

constexpr char kModelMagic[8] = {'K', 'I', 'T', 'N', 'N', 'M', 'O', 'D'};
constexpr std::uint32_t kModelFormatVersion = 1;

// Loader limits against crafted files (see docs/model-format.md): far above any real
// model (VGG-16: 138 M weights, 553 MB; its activations ~15 M values per image).
constexpr std::uint64_t kMaxModelFileBytes = std::uint64_t(4) << 30;
constexpr std::uint32_t kMaxLayers = 4096;
constexpr std::int64_t kMaxValuesPerSample = std::int64_t(1) << 26;  // all layer outputs

using Metadata = std::map<std::string, std::string>;

namespace detail {

class ByteWriter {
public:
    void u32(std::uint32_t v) { raw(le(v)); }
    void i64(std::int64_t v) { raw(le(static_cast<std::uint64_t>(v))); }
    void str(const std::string& s) {
        u32(std::uint32_t(s.size()));
        buf_.insert(buf_.end(), s.begin(), s.end());
    }
    template <class T>
    void scalars(const T* p, Eigen::Index n) {
        static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double");
        for (Eigen::Index i = 0; i < n; ++i) {
            typename std::conditional<sizeof(T) == 4, std::uint32_t, std::uint64_t>::type bits;
            std::memcpy(&bits, p + i, sizeof(T));
            raw(le(bits));
        }
    }
    void bytes(const char* p, size_t n) { buf_.insert(buf_.end(), p, p + n); }
    std::vector<char>& buffer() { return buf_; }

private:
    template <class U>
    static std::array<char, sizeof(U)> le(U v) {
        std::array<char, sizeof(U)> b;
        for (size_t i = 0; i < sizeof(U); ++i) b[i] = char((v >> (8 * i)) & 0xff);
        return b;
    }
    template <size_t K>
    void raw(const std::array<char, K>& b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
    std::vector<char> buf_;
};

class ByteReader {
public:
    ByteReader(const std::vector<char>& b, size_t end, std::string path)
        : b_(b), end_(end), path_(std::move(path)) {}
    std::uint32_t u32() { return std::uint32_t(uint(4)); }
    std::int64_t i64() { return std::int64_t(uint(8)); }
    std::string str(const char* what) {
        const std::uint32_t n = u32();
        need(n, what);
        std::string s(b_.data() + pos_, n);
        pos_ += n;
        return s;
    }
    template <class T>
    void scalars(T* p, Eigen::Index n, const std::string& what) {
        need(std::uint64_t(n) * sizeof(T), what.c_str());
        for (Eigen::Index i = 0; i < n; ++i) {
            auto bits = uint(sizeof(T));
            if constexpr (sizeof(T) == 4) {
                std::uint32_t b32 = std::uint32_t(bits);
                std::memcpy(p + i, &b32, 4);
            } else {
                std::memcpy(p + i, &bits, 8);
            }
        }
    }
    void need(std::uint64_t n, const char* what) const {
        if (n > end_ - pos_)
            throw ModelFileError(path_ + ": truncated or corrupt: " + what + " needs " +
                                 std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                                 ", only " + std::to_string(end_ - pos_) + " left");
    }
    size_t pos() const { return pos_; }
    size_t remaining() const { return end_ - pos_; }
    [[noreturn]] void fail(const std::string& what) const {
        throw ModelFileError(path_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
    }

private:
    std::uint64_t uint(size_t k) {
        need(k, "a number");
        std::uint64_t v = 0;
        for (size_t i = 0; i < k; ++i)
            v |= std::uint64_t(static_cast<unsigned char>(b_[pos_ + i])) << (8 * i);
        pos_ += k;
        return v;
    }
    const std::vector<char>& b_;
    size_t pos_ = 8, end_;  // after the magic
    std::string path_;
};

inline std::uint32_t crc32_of(const char* p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {  // zlib takes uInt lengths
        const uInt k = uInt(std::min<size_t>(n, 1u << 30));
        c = crc32(c, reinterpret_cast<const Bytef*>(p), k);
        p += k;
        n -= k;
    }
    return std::uint32_t(c);
}

}  // namespace detail

template <class T>
std::vector<char> serialize_model(Sequential<T>& model, const Metadata& meta = {}) {
    detail::ByteWriter w;
    w.bytes(kModelMagic, 8);
    w.u32(kModelFormatVersion);
    w.u32(sizeof(T));
    w.u32(std::uint32_t(meta.size()));
    for (auto& kv : meta) {
        w.str(kv.first);
        w.str(kv.second);
    }
    const auto& in = model.input_shape().dims;
    w.u32(std::uint32_t(in.size()));
    for (auto d : in) w.i64(d);
    w.u32(std::uint32_t(model.size()));
    for (size_t i = 0; i < model.size(); ++i) {
        auto& l = model.layer(i);
        w.str(l.type());
        const auto cfg = l.config();
        w.u32(std::uint32_t(cfg.items().size()));
        for (auto& kv : cfg.items()) {
            w.str(kv.first);
            w.str(kv.second);
        }
        auto ps = l.params();  // trainable tensors, then the layer's state (BatchNorm)
        for (auto* st : l.state()) ps.push_back(st);
        w.u32(std::uint32_t(ps.size()));
        for (auto* p : ps) {
            w.str(p->name);
            for (int k = 0; k < 4; ++k) w.i64(p->value.dimension(k));
            w.scalars(p->value.data(), p->value.size());
        }
    }
    const std::uint32_t crc = detail::crc32_of(w.buffer().data(), w.buffer().size());
    w.u32(crc);
    return std::move(w.buffer());
}

template <class T>
void save_model(const std::string& path, Sequential<T>& model, const Metadata& meta = {}) {
    write_file_atomic(path, serialize_model(model, meta));
}

inline const char* scalar_name(std::uint32_t size) {
    return size == 4 ? "float32" : size == 8 ? "float64" : "an unknown scalar type";
}

// Rebuilds the network from `bytes` (read from `path`, used in messages).
template <class T>
Sequential<T> deserialize_model(const std::vector<char>& bytes, const std::string& path,
                                Metadata* meta = nullptr) {
    if (bytes.size() < 8 || std::memcmp(bytes.data(), kModelMagic, 8) != 0)
        throw ModelFileError(path + ": not a kitnn model file (wrong magic)");
    if (bytes.size() < 8 + 4 + 4 + 4)
        throw ModelFileError(path + ": truncated: only " + std::to_string(bytes.size()) + " bytes");
    detail::ByteReader r(bytes, bytes.size() - 4, path);
    const std::uint32_t version = r.u32();
    std::uint32_t stored = 0;
    for (int i = 0; i < 4; ++i)
        stored |= std::uint32_t(static_cast<unsigned char>(bytes[bytes.size() - 4 + i])) << (8 * i);
    const bool crc_ok = stored == detail::crc32_of(bytes.data(), bytes.size() - 4);
    // The version comes first: a newer file may lay out (or checksum) the rest differently.
    if (version > kModelFormatVersion || version == 0)
        throw ModelFileError(path + ": model format version " + std::to_string(version) +
                             " is not supported by this kitnn (it reads versions 1 to " +
                             std::to_string(kModelFormatVersion) + ")" +
                             (crc_ok || version == 0 ? std::string("; upgrade kitnn")
                                                     : "; the file may also be corrupted"));
    if (!crc_ok)
        throw ModelFileError(path + ": checksum mismatch: the file is corrupted or truncated");
    const std::uint32_t scalar = r.u32();
    if (scalar != sizeof(T))
        throw ModelFileError(path + ": stores " + std::string(scalar_name(scalar)) +
                             " weights, but a " + scalar_name(sizeof(T)) + " model was requested");
    Metadata m;
    const std::uint32_t nmeta = r.u32();
    for (std::uint32_t i = 0; i < nmeta; ++i) {
        std::string k = r.str("a metadata key");
        m[k] = r.str("a metadata value");
    }
    const std::uint32_t rank = r.u32();
    if (rank != 1 && rank != 3) r.fail("input rank " + std::to_string(rank) + " (expected 1 or 3)");
    std::vector<Eigen::Index> dims;
    for (std::uint32_t i = 0; i < rank; ++i) {
        const auto d = r.i64();
        if (d < 1 || d > (1 << 20)) r.fail("input dimension " + std::to_string(d) + " out of range");
        dims.push_back(d);
    }
    const Shape input(std::move(dims));
    if (input.size() > kMaxValuesPerSample) r.fail("input shape " + input.str() + " is too large");
    Sequential<T> model{input};
    const std::uint32_t nlayers = r.u32();
    if (nlayers > kMaxLayers)
        r.fail(std::to_string(nlayers) + " layers (more than " + std::to_string(kMaxLayers) + ")");
    std::int64_t activations = input.size();  // values per sample over all layer outputs
    for (std::uint32_t li = 0; li < nlayers; ++li) {
        const std::string where = "layer " + std::to_string(li);
        const std::string type = r.str("a layer type");
        Config cfg;
        const std::uint32_t nc = r.u32();
        for (std::uint32_t i = 0; i < nc; ++i) {
            std::string k = r.str("a hyperparameter name");
            cfg.set(k, r.str("a hyperparameter value"));
        }
        try {
            // Refuse what the file cannot back, before the layer allocates anything.
            const std::string why =
                check_layer_limits(type, cfg, model.output_shape(), r.remaining(), sizeof(T));
            if (!why.empty()) r.fail(where + " (" + type + "): " + why);
            model.add(make_layer<T>(type, cfg));
            activations += model.output_shape().size();
            if (model.output_shape().size() > kMaxValuesPerSample || activations > kMaxValuesPerSample)
                r.fail(where + " (" + type + "): output shape " + model.output_shape().str() +
                       " makes the activations of one sample too large");
        } catch (const ModelFileError&) {
            throw;
        } catch (const std::exception& e) {
            r.fail(where + " (" + type + "): " + e.what());
        }
        auto ps = model.layer(li).params();
        for (auto* st : model.layer(li).state()) ps.push_back(st);
        const std::uint32_t nt = r.u32();
        if (nt != ps.size())
            r.fail(where + " (" + type + ") has " + std::to_string(nt) + " tensors, expected " +
                   std::to_string(ps.size()));
        for (auto* p : ps) {
            const std::string name = r.str("a tensor name");
            if (name != p->name)
                r.fail(where + " (" + type + "): tensor '" + name + "', expected '" + p->name + "'");
            for (int k = 0; k < 4; ++k) {
                const auto d = r.i64();
                if (d != p->value.dimension(k))
                    r.fail(where + " (" + type + "): tensor '" + name + "' dimension " +
                           std::to_string(k) + " is " + std::to_string(d) + ", the layer needs " +
                           std::to_string(p->value.dimension(k)));
            }
            r.scalars(p->value.data(), p->value.size(), where + " tensor '" + name + "'");
        }
    }
    if (r.pos() != bytes.size() - 4)
        r.fail(std::to_string(bytes.size() - 4 - r.pos()) + " unexpected bytes after the last layer");
    if (meta) *meta = std::move(m);
    return model;
}

template <class T>
Sequential<T> load_model(const std::string& path, Metadata* meta = nullptr) {
    // A regular file of sane size only: /dev/zero or a FIFO must not be read forever.
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw ModelFileError(path + ": cannot open: no such file");
    if (!std::filesystem::is_regular_file(status))
        throw ModelFileError(path + ": not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw ModelFileError(path + ": cannot read its size: " + ec.message());
    if (size > kMaxModelFileBytes)
        throw ModelFileError(path + ": " + std::to_string(size) + " bytes is larger than any model (limit " +
                             std::to_string(kMaxModelFileBytes) + ")");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ModelFileError(path + ": cannot open: " + std::strerror(errno));
    std::vector<char> bytes(static_cast<size_t>(size));
    f.read(bytes.data(), std::streamsize(size));
    if (size_t(f.gcount()) != bytes.size())
        throw ModelFileError(path + ": read error (got " + std::to_string(f.gcount()) + " of " +
                             std::to_string(size) + " bytes)");
    return deserialize_model<T>(bytes, path, meta);
}

}  // namespace kitnn
