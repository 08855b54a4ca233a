// Regenerates the committed seed corpus in tests/fuzz/corpus/{idx,model,image}:
// a few small valid files made with kitnn itself (and stb_image_write) plus broken
// variants (truncated, wrong magic, lying headers). Every file stays under ~2 KB.
//   c++ -std=c++17 -O0 -Iinclude tests/fuzz/make_corpus.cpp $(pkg-config --cflags --libs eigen3 zlib stb) \
//       -o /tmp/make_corpus && /tmp/make_corpus tests/fuzz/corpus
// idx seeds start with the fuzz_idx mode byte (see fuzz_idx.cpp), then the file(s).
#include <kitnn/kitnn.hpp>

#include <stb_image_write.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;
using namespace kitnn;

static void put(const fs::path& p, const Bytes& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
static Bytes slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
static Bytes idx(std::uint32_t magic, std::vector<std::uint32_t> dims, std::size_t payload) {
    Bytes b;
    auto be = [&](std::uint32_t v) { for (int s = 24; s >= 0; s -= 8) b.push_back((v >> s) & 0xff); };
    be(magic);
    for (auto d : dims) be(d);
    for (std::size_t i = 0; i < payload; ++i) b.push_back((unsigned char)(i * 37 % 256));
    return b;
}
static Bytes gz(const Bytes& in) {  // a gzip stream (header, deflate, trailer)
    z_stream z{};
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    Bytes out(in.size() + 64);
    z.next_in = const_cast<unsigned char*>(in.data());
    z.avail_in = uInt(in.size());
    z.next_out = out.data();
    z.avail_out = uInt(out.size());
    deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}
static Bytes cat(unsigned char mode, const Bytes& a, const Bytes& b = {}) {
    Bytes r{mode};
    r.insert(r.end(), a.begin(), a.end());
    r.insert(r.end(), b.begin(), b.end());
    return r;
}
static Bytes pair(const Bytes& labels, const Bytes& images) {  // mode 2: u16 labels length
    Bytes r{2, (unsigned char)(labels.size() & 0xff), (unsigned char)(labels.size() >> 8)};
    r.insert(r.end(), labels.begin(), labels.end());
    r.insert(r.end(), images.begin(), images.end());
    return r;
}
static Bytes head(Bytes b, std::size_t n) { b.resize(std::min(n, b.size())); return b; }

int main(int argc, char** argv) {
    const fs::path out = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    for (const char* d : {"idx", "model", "image"}) fs::create_directories(out / d);

    // IDX ------------------------------------------------------------------------
    const Bytes labels = idx(0x801, {3}, 3), images = idx(0x803, {3, 4, 5}, 60);
    const fs::path I = out / "idx";
    put(I / "labels_raw", cat(0, labels));
    put(I / "labels_gz", cat(0, gz(labels)));
    put(I / "labels_trailing", cat(0, labels, Bytes{1, 2, 3}));
    put(I / "labels_bad_magic", cat(0, idx(0x803, {3}, 3)));
    put(I / "images_raw", cat(1, images));
    put(I / "images_gz", cat(1, gz(images)));
    put(I / "images_gz_cut", cat(1, head(gz(images), gz(images).size() - 6)));
    put(I / "images_truncated", cat(1, head(images, 40)));
    put(I / "images_zero_dim", cat(1, idx(0x803, {0, 4, 5}, 0)));
    put(I / "images_huge_count_gz", cat(1, gz(idx(0x803, {0x7fffffff, 28, 28}, 100))));
    put(I / "pair_ok", pair(labels, images));
    put(I / "pair_gz", pair(gz(labels), gz(images)));
    put(I / "pair_count_mismatch", pair(idx(0x801, {2}, 2), images));
    put(I / "float2d", cat(3, idx(0xD02, {2, 3}, 24)));

    // Models ---------------------------------------------------------------------
    using K = std::array<int, 2>;
    const fs::path M = out / "model";
    auto save = [&](const char* name, auto& m, const Metadata& meta = {}) {
        const auto b = serialize_model(m, meta);
        put(M / name, Bytes(b.begin(), b.end()));
        return Bytes(b.begin(), b.end());
    };
    Sequential<float> dense(Shape::flat(4), 1);
    dense.add<Dense>(3, Activation::relu);
    dense.add<Dense>(2);
    const Bytes d = save("dense", dense, {{"name", "tiny"}});
    Sequential<float> every(Shape::image(1, 6, 5), 2);
    every.add<Conv2D>(2, K{3, 2}, Activation::relu, Padding::same, 1, Init::he_normal);
    every.add<ReLU>();
    every.add<MaxPool2D>(K{2, 2}, K{1, 1});
    every.add<Flatten>();
    every.add<Dense>(3, Activation::relu, Init::he_uniform);
    every.add<Dropout>(0.25);
    every.add<Dense>(2);
    every.add<Softmax>();
    const Bytes e = save("every_layer", every);
    Sequential<double> dbl(Shape::flat(2), 3);
    dbl.add<Dense>(2);
    save("double", dbl);
    Sequential<float> strided(Shape::image(2, 5, 5), 4);
    strided.add<Conv2D>(1, K{2, 2}, Activation::linear, Padding::valid, 2);
    strided.add<Flatten>();
    save("conv_stride", strided);
    put(M / "truncated", head(e, e.size() / 2));
    Bytes bad_crc = d;
    bad_crc[20] ^= 0x40;
    put(M / "bad_crc", bad_crc);
    Bytes bad_magic = d;
    bad_magic[0] = 'X';
    put(M / "bad_magic", bad_magic);
    put(M / "only_magic", Bytes(kModelMagic, kModelMagic + 8));

    // Images ---------------------------------------------------------------------
    const fs::path G = out / "image";
    std::vector<unsigned char> px(4 * 3 * 4);
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = (unsigned char)(i * 53 % 256);
    const std::string g = G.string() + "/";
    stbi_write_png((g + "grey.png").c_str(), 3, 4, 1, px.data(), 3);
    stbi_write_png((g + "grey_alpha.png").c_str(), 3, 4, 2, px.data(), 6);
    stbi_write_png((g + "rgb.png").c_str(), 3, 4, 3, px.data(), 9);
    stbi_write_png((g + "rgba.png").c_str(), 3, 4, 4, px.data(), 12);
    stbi_write_jpg((g + "rgb.jpg").c_str(), 3, 4, 3, px.data(), 50);
    stbi_write_bmp((g + "rgb.bmp").c_str(), 3, 4, 3, px.data());
    stbi_write_tga((g + "rgba.tga").c_str(), 3, 4, 4, px.data());
    std::vector<float> hdr(3 * 4 * 3, 0.5f);
    stbi_write_hdr((g + "rgb.hdr").c_str(), 3, 4, 3, hdr.data());
    put(G / "grey.pgm", Bytes{'P', '5', '\n', '3', ' ', '2', '\n', '2', '5', '5', '\n', 0, 64, 128, 192, 255, 7});
    // 1x1 GIF89a (a well-known minimal GIF).
    put(G / "pixel.gif", Bytes{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
                               0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b});
    const Bytes png = slurp(G / "rgba.png");
    put(G / "truncated.png", head(png, png.size() / 2));
    Bytes huge = png;  // IHDR width/height at bytes 16..23 -> 60000 x 60000 (CRC left stale)
    for (int k : {16, 20}) { huge[k] = 0; huge[k + 1] = 0; huge[k + 2] = 0xea; huge[k + 3] = 0x60; }
    put(G / "huge_dims.png", huge);
    put(G / "not_an_image.txt", Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
    std::printf("corpus written to %s\n", out.c_str());
}
