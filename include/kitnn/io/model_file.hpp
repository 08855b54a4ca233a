// kitnn/io/model_file.hpp — save and load a Sequential: architecture + weights.
//
// Format version 2 (all integers little-endian; documented in docs/model-format.md):
//   magic      8 bytes  "KITNNMOD"
//   version    u32      2
//   scalar     u32      4 = float32, 8 = float64
//   metadata   u32 count, then count x (str key, str value)
//   input      u32 rank, then rank x i64 dims (C,H,W or F)
//   layers     u32 count, then count x layer record:
//                str type, u32 n, n x (str key, str value)      hyperparameters
//                u32 tensors, per tensor: str name, 4 x i64 dims, data (scalar)
//                u32 branches, per branch: u32 count, count x layer record (nested)
//   extras     u32 count, per entry: str name, 4 x i64 dims, data (scalar)
//   checksum   u32      CRC-32 (zlib) of every byte before it
// where str = u32 length + bytes. A container (Branches) stores no tensors itself:
// its weights are in its branches' layer records; other layers store 0 branches.
// "extras" are named tensors that are not part of the network (a training
// checkpoint's optimizer moments). Version 1 is the same without the per-layer
// branch counts and without extras; it is still read.
// The reader checks the length, magic, version, scalar type and checksum before
// parsing, then bounds-checks every field, so a truncated or corrupted file gives a
// clear error, and hyperparameters are checked against the bytes left in the file
// before a layer (nested ones too) allocates its weights.
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
#include <functional>
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
constexpr std::uint32_t kModelFormatVersion = 2;

// Loader limits against crafted files (see docs/model-format.md): far above any real
// model (VGG-16: 138 M weights, 553 MB; its activations ~15 M values per image).
constexpr std::uint64_t kMaxModelFileBytes = std::uint64_t(4) << 30;
constexpr std::uint32_t kMaxLayers = 4096;    // all layers, nested ones included
constexpr std::uint32_t kMaxBranches = 4096;  // all branches of all containers
constexpr int kMaxNesting = 64;               // containers inside containers
constexpr std::int64_t kMaxValuesPerSample = std::int64_t(1) << 26;  // all layer outputs

using Metadata = std::map<std::string, std::string>;
// Named tensors saved next to the network but not part of it (the "extras" section):
// e.g. the optimizer state of a training checkpoint. The same type as
// Optimizer<T>::NamedTensors.
template <class T>
using NamedTensors = std::vector<std::pair<std::string, Tensor<T>>>;

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
    void skip(std::uint64_t n, const char* what) {
        need(n, what);
        pos_ += size_t(n);
    }
    void need(std::uint64_t n, const char* what) const {
        if (n > end_ - pos_)
            throw ModelFileError(path_ + ": truncated or corrupt: " + what + " needs " +
                                 std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                                 ", only " + std::to_string(end_ - pos_) + " left" +
                                 (context_.empty() ? std::string() : " (in " + context_ + ")"));
    }
    // What is being read ("layer 2 (Branches): branch 1, layer 0"), for need()'s message.
    void set_context(std::string c) { context_ = std::move(c); }
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
    std::string path_, context_;
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

template <class T>
void write_tensor(ByteWriter& w, const std::string& name, const Tensor<T>& t) {
    w.str(name);
    for (int k = 0; k < 4; ++k) w.i64(t.dimension(k));
    w.scalars(t.data(), t.size());
}

// One layer record; a container's branches follow as nested records.
template <class T>
void write_layer(ByteWriter& w, Layer<T>& l) {
    w.str(l.type());
    const auto cfg = l.config();
    w.u32(std::uint32_t(cfg.items().size()));
    for (auto& kv : cfg.items()) {
        w.str(kv.first);
        w.str(kv.second);
    }
    // Trainable tensors, then the layer's state (BatchNorm). A container's params()
    // and state() are its branch layers' tensors, which their own records hold.
    std::vector<Param<T>*> ps;
    if (l.branch_count() == 0) {
        ps = l.params();
        for (auto* st : l.state()) ps.push_back(st);
    }
    w.u32(std::uint32_t(ps.size()));
    for (auto* p : ps) write_tensor(w, p->name, p->value);
    w.u32(std::uint32_t(l.branch_count()));
    for (size_t b = 0; b < l.branch_count(); ++b) {
        const auto inner = l.branch(b);
        w.u32(std::uint32_t(inner.size()));
        for (auto* il : inner) write_layer(w, *il);
    }
}

}  // namespace detail

// The file's bytes (see the format above). `extras` are stored as they are, in order.
// Throws UnregisteredLayerError (layers/registry.hpp) when a layer's type is not
// registered: the loader could not read such a file back.
template <class T>
std::vector<char> serialize_model(Sequential<T>& model, const Metadata& meta = {},
                                  const NamedTensors<T>& extras = {}) {
    if (model.size() == 0) throw std::invalid_argument("save_model: the model has no layers");
    for (size_t i = 0; i < model.size(); ++i) require_registered(model.layer(i));
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
    for (size_t i = 0; i < model.size(); ++i) detail::write_layer(w, model.layer(i));
    w.u32(std::uint32_t(extras.size()));
    for (auto& e : extras) detail::write_tensor(w, e.first, e.second);
    const std::uint32_t crc = detail::crc32_of(w.buffer().data(), w.buffer().size());
    w.u32(crc);
    return std::move(w.buffer());
}

// Writes the model (and optional metadata and extras) atomically to `path`.
template <class T>
void save_model(const std::string& path, Sequential<T>& model, const Metadata& meta = {},
                const NamedTensors<T>& extras = {}) {
    write_file_atomic(path, serialize_model(model, meta, extras));
}

inline const char* scalar_name(std::uint32_t size) {
    return size == 4 ? "float32" : size == 8 ? "float64" : "an unknown scalar type";
}

namespace detail {

// Reads the layer records of one file (recursing into containers) and keeps the
// limits that span the whole model: layers and branches in total, nesting depth,
// and the activations of one sample.
template <class T>
class LayerReader {
public:
    // Builds a layer where it belongs and returns it: Sequential::add at the top,
    // Layer::build + Chain::add_built inside a branch.
    using Place = std::function<Layer<T>&(std::unique_ptr<Layer<T>>)>;

    LayerReader(ByteReader& r, std::uint32_t version, Rng& rng, std::int64_t activations)
        : r_(r), version_(version), rng_(rng), activations_(activations) {}

    // Reads one layer record whose input shape is `in`, built by `place`, with its
    // weights. `where` names it in errors: "layer 3" or "layer 3 (Branches): branch 1,
    // layer 0"; `depth` is the number of containers around it.
    Layer<T>& read(const Shape& in, const std::string& where, int depth, const Place& place) {
        if (++layers_ > kMaxLayers)
            r_.fail(where + ": more than " + std::to_string(kMaxLayers) + " layers (nested ones included)");
        r_.set_context(where);
        const std::string type = r_.str("a layer type");
        const std::string at = where + " (" + type + ")";
        Config cfg;
        const std::uint32_t nc = r_.u32();
        for (std::uint32_t i = 0; i < nc; ++i) {
            std::string k = r_.str("a hyperparameter name");
            cfg.set(k, r_.str("a hyperparameter value"));
        }
        std::unique_ptr<Layer<T>> made;
        try {
            // Made from the registry (constructors only check and store their
            // hyperparameters), then refused if the file cannot back it, before build
            // allocates anything.
            made = make_layer<T>(type, cfg);
            const std::string why =
                check_layer_limits(*made, in, r_.remaining(), sizeof(T), kMaxValuesPerSample);
            if (!why.empty()) r_.fail(at + ": " + why);
        } catch (const ModelFileError&) {
            throw;
        } catch (const std::exception& e) {
            r_.fail(at + ": " + e.what());
        }
        if (auto* box = dynamic_cast<Branches<T>*>(made.get())) {
            // A container is built after its branches, which the loader builds one
            // layer at a time (checked, weights read); the container keeps them.
            if (version_ < 2) r_.fail(at + ": a container in a version-1 file");
            const std::uint32_t nt = r_.u32();
            if (nt != 0)
                r_.fail(at + " has " + std::to_string(nt) +
                        " tensors, expected 0 (a container's weights are in its branches)");
            if (depth + 1 > kMaxNesting)
                r_.fail(at + ": containers nested more than " + std::to_string(kMaxNesting) + " deep");
            const std::uint32_t nb = r_.u32();
            if (nb > kMaxBranches || (branches_ += nb) > kMaxBranches)
                r_.fail(at + ": " + std::to_string(nb) + " branches (more than " +
                        std::to_string(kMaxBranches) + " in the model)");
            for (std::uint32_t b = 0; b < nb; ++b) {
                Chain<T>& chain = box->branch();
                const std::string bw = at + ": branch " + std::to_string(b);
                r_.set_context(bw);
                const std::uint32_t count = r_.u32();
                if (count > kMaxLayers)
                    r_.fail(bw + ": " + std::to_string(count) + " layers (more than " +
                            std::to_string(kMaxLayers) + ")");
                Shape s = in;
                for (std::uint32_t i = 0; i < count; ++i) {
                    const Place nested = [&](std::unique_ptr<Layer<T>> l) -> Layer<T>& {
                        l->build(s, rng_);
                        return chain.add_built(std::move(l));
                    };
                    s = read(s, bw + ", layer " + std::to_string(i), depth + 1, nested).output_shape();
                }
            }
            r_.set_context(at);
            return placed(at, std::move(made), place);
        }
        Layer<T>& l = placed(at, std::move(made), place);
        auto ps = l.params();
        for (auto* st : l.state()) ps.push_back(st);
        const std::uint32_t nt = r_.u32();
        if (nt != ps.size())
            r_.fail(at + " has " + std::to_string(nt) + " tensors, expected " + std::to_string(ps.size()));
        for (auto* p : ps) {
            const std::string name = r_.str("a tensor name");
            if (name != p->name) r_.fail(at + ": tensor '" + name + "', expected '" + p->name + "'");
            for (int k = 0; k < 4; ++k) {
                const auto d = r_.i64();
                if (d != p->value.dimension(k))
                    r_.fail(at + ": tensor '" + name + "' dimension " + std::to_string(k) + " is " +
                            std::to_string(d) + ", the layer needs " + std::to_string(p->value.dimension(k)));
            }
            r_.scalars(p->value.data(), p->value.size(), where + " tensor '" + name + "'");
        }
        if (version_ >= 2) {
            const std::uint32_t nb = r_.u32();
            if (nb != 0) r_.fail(at + " has " + std::to_string(nb) + " branches, but is not a container");
        }
        return l;
    }

private:
    // Builds `made` through `place`; any error (a ShapeError from build, ...) names
    // the layer. Then the activations of one sample must stay bounded.
    Layer<T>& placed(const std::string& at, std::unique_ptr<Layer<T>> made, const Place& place) {
        const std::string prefix = made->type() + ": ";  // a nested layer's own ShapeError
        try {
            Layer<T>& l = place(std::move(made));
            const std::int64_t out = l.output_shape().size();
            activations_ += out;
            if (out > kMaxValuesPerSample || activations_ > kMaxValuesPerSample)
                r_.fail(at + ": output shape " + l.output_shape().str() +
                        " makes the activations of one sample too large");
            return l;
        } catch (const ModelFileError&) {
            throw;
        } catch (const std::exception& e) {
            const std::string msg = e.what();
            r_.fail(at + ": " + (msg.compare(0, prefix.size(), prefix) == 0 ? msg.substr(prefix.size()) : msg));
        }
    }

    ByteReader& r_;
    std::uint32_t version_;
    Rng& rng_;
    std::int64_t activations_;  // values per sample over all layer outputs
    std::uint32_t layers_ = 0, branches_ = 0;
};

}  // namespace detail

// Rebuilds the network from `bytes` (read from `path`, used in messages). `meta` and
// `extras`, when given, receive the metadata and the extra tensors (none in version 1).
template <class T>
Sequential<T> deserialize_model(const std::vector<char>& bytes, const std::string& path,
                                Metadata* meta = nullptr, NamedTensors<T>* extras = nullptr) {
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
    // save_model never writes one (found by fuzzing: such a model loaded, then failed in predict).
    if (nlayers == 0) r.fail("no layers (a model has at least one)");
    detail::LayerReader<T> reader(r, version, model.rng(), input.size());
    const typename detail::LayerReader<T>::Place top = [&](std::unique_ptr<Layer<T>> l) -> Layer<T>& {
        return model.add(std::move(l));
    };
    for (std::uint32_t li = 0; li < nlayers; ++li)
        reader.read(model.output_shape(), "layer " + std::to_string(li), 0, top);
    NamedTensors<T> ex;
    if (version >= 2) {
        r.set_context("the extras");
        const std::uint32_t n = r.u32();
        for (std::uint32_t i = 0; i < n; ++i) {
            const std::string name = r.str("an extra tensor's name");
            const std::string what = "extra tensor '" + name + "'";
            std::array<Eigen::Index, 4> d{};
            __int128 values = 1;  // four dims of at most 2^32: no overflow
            for (auto& v : d) {
                v = r.i64();
                if (v < 0 || v > (std::int64_t(1) << 32))
                    r.fail(what + ": dimension " + std::to_string(v) + " out of range");
                values *= v;
            }
            if (values * __int128(sizeof(T)) > __int128(r.remaining()))
                r.fail(what + ": needs more than the " + std::to_string(r.remaining()) +
                       " bytes left in the file");
            if (!extras) {  // not wanted: step over the data
                r.skip(std::uint64_t(values) * sizeof(T), what.c_str());
                continue;
            }
            Tensor<T> t(d[0], d[1], d[2], d[3]);
            r.scalars(t.data(), t.size(), what);
            ex.emplace_back(name, std::move(t));
        }
    }
    if (r.pos() != bytes.size() - 4)
        r.fail(std::to_string(bytes.size() - 4 - r.pos()) + " unexpected bytes after the last " +
               (version >= 2 ? "extra tensor" : "layer"));
    if (meta) *meta = std::move(m);
    if (extras) *extras = std::move(ex);
    return model;
}

template <class T>
Sequential<T> load_model(const std::string& path, Metadata* meta = nullptr,
                         NamedTensors<T>* extras = nullptr) {
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
    return deserialize_model<T>(bytes, path, meta, extras);
}

}  // namespace kitnn
