// Tests for the IDX reader/writer (kitnn/data/idx.hpp) and the image I/O
// (kitnn/io/image.hpp): round trips, and every error with its message, since the
// messages are what a user sees when a download went wrong.
#include <kitnn/data/idx.hpp>
#include <kitnn/io/image.hpp>

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using kitnn::data::DataError;
using kitnn::io::ImageError;

namespace {

// Each test's scratch folder (tests/temp_dir.hpp), named after this file.
struct TempDir : kitnn_test::TempDir {
    TempDir() : kitnn_test::TempDir("kitnn_test_idx") {}
};

using Bytes = std::vector<std::uint8_t>;

void write_file(const std::string& path, const Bytes& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(out.good());
}

Bytes read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_gz(const std::string& path, const Bytes& b) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!b.empty()) REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == int(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

// A hand-made IDX header (big-endian), for files the writers refuse to produce.
Bytes header(std::uint32_t magic, std::initializer_list<std::uint32_t> dims) {
    Bytes h;
    auto put = [&](std::uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<std::uint8_t>(v >> s));
    };
    put(magic);
    for (auto d : dims) put(d);
    return h;
}

Bytes concat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The message of the E thrown by f; fails the test if f throws nothing.
template <class E, class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    FAIL("expected an exception, none was thrown");
    return {};
}

std::string read_error(const std::string& path, std::uint32_t magic = kitnn::data::kIdxImagesMagic) {
    return error_of<DataError>([&] {
        std::vector<std::uint32_t> dims;
        kitnn::data::read_idx_bytes(path, magic, dims);
    });
}

Bytes test_pixels(std::size_t n) {
    Bytes px(n);
    for (std::size_t i = 0; i < n; ++i) px[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
    px[0] = 0;
    px[n - 1] = 255;
    return px;
}

}  // namespace

TEST_CASE("IDX round trip, raw and gzip", "[idx]") {
    TempDir tmp;
    const std::uint32_t n = 3, rows = 4, cols = 5;
    const Bytes px = test_pixels(n * rows * cols);
    const Bytes labels = {7, 0, 9};

    for (const std::string ext : {"", ".gz"}) {
        INFO("extension '" << ext << "'");
        const std::string ip = tmp / ("img-idx3-ubyte" + ext), lp = tmp / ("lbl-idx1-ubyte" + ext);
        kitnn::data::write_idx_images(ip, px, n, rows, cols);
        kitnn::data::write_idx_labels(lp, labels);

        // The writer picks the format from the name: gzip magic 1f 8b, or the IDX magic.
        const Bytes head = read_file(ip);
        REQUIRE(head.size() >= 4);
        if (ext.empty()) CHECK(Bytes(head.begin(), head.begin() + 4) == Bytes{0, 0, 8, 3});
        else CHECK((head[0] == 0x1f && head[1] == 0x8b));

        std::vector<std::uint32_t> dims;
        CHECK(kitnn::data::read_idx_bytes(ip, kitnn::data::kIdxImagesMagic, dims) == px);
        CHECK(dims == std::vector<std::uint32_t>{n, rows, cols});
        CHECK(kitnn::data::read_idx_bytes(lp, kitnn::data::kIdxLabelsMagic, dims) == labels);
        CHECK(dims == std::vector<std::uint32_t>{n});

        const auto ds = kitnn::data::load_idx(ip, lp);
        REQUIRE(ds.size() == 3);
        CHECK(ds.images.dimension(1) == 1);
        CHECK(ds.images.dimension(2) == rows);
        CHECK(ds.images.dimension(3) == cols);
        CHECK(ds.labels == labels);
        for (std::uint32_t i = 0; i < n; ++i)
            for (std::uint32_t y = 0; y < rows; ++y)
                for (std::uint32_t x = 0; x < cols; ++x) {
                    const float v = ds.images(i, 0, y, x);
                    const std::uint8_t b = px[(i * rows + y) * cols + x];
                    REQUIRE(v == static_cast<float>(b) / 255.0f);
                    REQUIRE(std::lround(v * 255.0f) == b);
                }
    }

    // gzip is recognised by content, not by name.
    fs::copy_file(tmp / "img-idx3-ubyte.gz", tmp / "gz-without-suffix");
    fs::copy_file(tmp / "img-idx3-ubyte", tmp / "raw-with-suffix.gz");
    std::vector<std::uint32_t> dims;
    CHECK(kitnn::data::read_idx_bytes(tmp / "gz-without-suffix", kitnn::data::kIdxImagesMagic, dims) == px);
    CHECK(kitnn::data::read_idx_bytes(tmp / "raw-with-suffix.gz", kitnn::data::kIdxImagesMagic, dims) == px);
}

TEST_CASE("IDX pixels: every byte value survives bytes -> [0,1] floats -> bytes", "[idx]") {
    TempDir tmp;
    Bytes px(256);
    for (int i = 0; i < 256; ++i) px[i] = static_cast<std::uint8_t>(i);
    kitnn::data::write_idx_images(tmp / "i", px, 1, 16, 16);
    kitnn::data::write_idx_labels(tmp / "l", {4});
    const auto ds = kitnn::data::load_idx(tmp / "i", tmp / "l");
    const float* v = ds.images.data();
    CHECK(v[0] == 0.0f);
    CHECK(v[255] == 1.0f);
    for (int i = 0; i < 256; ++i) REQUIRE(std::lround(v[i] * 255.0f) == i);
}

TEST_CASE("IDX errors: wrong magic, truncated, trailing bytes, count mismatch", "[idx]") {
    TempDir tmp;
    const Bytes hdr = header(0x803, {2, 3, 3});  // 16-byte header + 18 bytes of data = 34
    const Bytes full = concat(hdr, test_pixels(18));

    SECTION("wrong magic: a labels file given as images") {
        kitnn::data::write_idx_labels(tmp / "labels", {1, 2});
        const auto msg = read_error(tmp / "labels");
        CHECK_THAT(msg, StartsWith(tmp / "labels"));
        CHECK_THAT(msg, Contains("bad magic number: expected 0x00000803"));
        CHECK_THAT(msg, Contains("found 0x00000801"));
    }
    SECTION("wrong magic: not an IDX file at all") {
        write_file(tmp / "png", {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0});
        CHECK_THAT(read_error(tmp / "png"), Contains("found 0x89504e47 (not an IDX header)"));
    }
    SECTION("truncated data, raw and gzip") {
        const Bytes cut(full.begin(), full.begin() + 30);
        write_file(tmp / "raw", cut);
        write_gz(tmp / "gz", cut);
        for (const char* name : {"raw", "gz"}) {
            const auto msg = read_error(tmp / name);
            CHECK_THAT(msg, StartsWith(tmp / name));
            CHECK_THAT(msg, Contains("truncated at byte 30: header promises 34 bytes"));
        }
    }
    SECTION("truncated header") {
        write_file(tmp / "empty", {});
        CHECK_THAT(read_error(tmp / "empty"), Contains("truncated at byte 0"));
        write_file(tmp / "short", Bytes(hdr.begin(), hdr.begin() + 10));
        CHECK_THAT(read_error(tmp / "short"),
                   Contains("truncated at byte 10: an IDX header with 3 dims needs 16 bytes"));
    }
    SECTION("trailing bytes, raw and gzip") {
        const Bytes longer = concat(full, {1, 2, 3});
        write_file(tmp / "raw", longer);
        write_gz(tmp / "gz", longer);
        for (const char* name : {"raw", "gz"}) {
            const auto msg = read_error(tmp / name);
            CHECK_THAT(msg, StartsWith(tmp / name));
            CHECK_THAT(msg, Contains("has 3 trailing bytes: header promises 34 bytes"));
            CHECK_THAT(msg, Contains("has 37"));
        }
    }
    SECTION("gzip stream cut off (incomplete download)") {
        // Bytes that do not compress, so half the .gz file holds half the data.
        Bytes noise(20000);
        std::uint32_t s = 12345;
        for (auto& b : noise) b = static_cast<std::uint8_t>((s = s * 1103515245u + 12345u) >> 24);
        write_gz(tmp / "whole.gz", concat(header(0x803, {20, 50, 20}), noise));
        const Bytes gz = read_file(tmp / "whole.gz");
        write_file(tmp / "half.gz", Bytes(gz.begin(), gz.begin() + gz.size() / 2));
        const auto msg = read_error(tmp / "half.gz");
        CHECK_THAT(msg, StartsWith(tmp / "half.gz"));
        CHECK_THAT(msg, Contains("truncated at byte"));
        CHECK_THAT(msg, Contains("header promises 20016 bytes"));
        CHECK_THAT(msg, Contains("gzip stream itself is cut short"));

        // Only the 8-byte gzip trailer missing: all data there, but the file is damaged.
        write_file(tmp / "notrailer.gz", Bytes(gz.begin(), gz.end() - 8));
        CHECK_THAT(read_error(tmp / "notrailer.gz"), Contains("cut short"));
    }
    SECTION("corrupt gzip data") {
        Bytes gz = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};  // a valid gzip header...
        for (int i = 0; i < 64; ++i) gz.push_back(0xff);  // ...then garbage
        write_file(tmp / "bad.gz", gz);
        CHECK_THAT(read_error(tmp / "bad.gz"), StartsWith(tmp / "bad.gz"));
    }
    SECTION("images and labels disagree in count") {
        kitnn::data::write_idx_images(tmp / "i", test_pixels(3 * 2 * 2), 3, 2, 2);
        kitnn::data::write_idx_labels(tmp / "l", {1, 2});
        const auto msg = error_of<DataError>([&] { kitnn::data::load_idx(tmp / "i", tmp / "l"); });
        CHECK_THAT(msg, StartsWith(tmp / "i"));
        CHECK_THAT(msg, Contains("3 images vs 2 labels"));
    }
    SECTION("missing file, directory") {
        const auto msg = read_error(tmp / "nope");
        CHECK_THAT(msg, StartsWith(tmp / "nope"));
        CHECK_THAT(msg, Contains("cannot open"));
        CHECK_THAT(read_error(tmp.path.string()), Contains("is a directory"));
        // load_idx reports a missing images file even when the labels file is fine.
        kitnn::data::write_idx_labels(tmp / "l", {1});
        CHECK_THAT(error_of<DataError>([&] { kitnn::data::load_idx(tmp / "nope", tmp / "l"); }),
                   StartsWith(tmp / "nope"));
    }
}

TEST_CASE("IDX errors name the element type a wrong file really has", "[idx]") {
    TempDir dir;
    const std::pair<std::uint8_t, const char*> types[] = {
        {0x09, "signed bytes"}, {0x0B, "int16"}, {0x0C, "int32"}, {0x0D, "float32"}, {0x0E, "float64"}};
    for (auto& t : types) {
        // magic 00 00 TT 03, dims 1 x 1 x 1, then one element (at most 8 bytes)
        write_file(dir / "typed.idx", Bytes{0, 0, t.first, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
                                            0, 0, 0, 0, 0, 0, 0, 0});
        const std::string e = read_error(dir / "typed.idx");
        INFO(e);
        CHECK_THAT(e, Contains(std::string("IDX ") + t.second + ", 3 dims"));
    }
}

TEST_CASE("IDX errors: zero and absurd dimensions, without allocating them", "[idx]") {
    TempDir tmp;
    SECTION("zero count / zero rows") {
        write_file(tmp / "n0", header(0x803, {0, 28, 28}));
        CHECK_THAT(read_error(tmp / "n0"), Contains("dimension 0 of 3 is 0"));
        write_file(tmp / "r0", header(0x803, {5, 0, 28}));
        CHECK_THAT(read_error(tmp / "r0"), Contains("dimension 1 of 3 is 0"));
        write_file(tmp / "l0", header(0x801, {0}));
        CHECK_THAT(read_error(tmp / "l0", kitnn::data::kIdxLabelsMagic), Contains("dimension 0 of 1 is 0"));
    }
    SECTION("rows or cols beyond 4096") {
        write_file(tmp / "big", header(0x803, {1, 100000, 28}));
        const auto msg = read_error(tmp / "big");
        CHECK_THAT(msg, StartsWith(tmp / "big"));
        CHECK_THAT(msg, Contains("dimension 1 is 100000, more than the 4096"));
        write_file(tmp / "big2", header(0x803, {1, 28, 4097}));
        CHECK_THAT(read_error(tmp / "big2"), Contains("dimension 2 is 4097"));
    }
    SECTION("a header promising 2^56 bytes is caught before any allocation") {
        // 4294967295 x 4096 x 4096 bytes = 64 PiB: any attempt to allocate it would throw
        // std::bad_alloc (or be killed), not DataError.
        const Bytes h = concat(header(0x803, {0xffffffffu, 4096, 4096}), Bytes(100, 0));
        write_file(tmp / "huge", h);
        write_gz(tmp / "huge.gz", h);
        const std::string promised = std::to_string(16 + 0xffffffffull * 4096 * 4096);
        CHECK_THAT(read_error(tmp / "huge"), Contains("truncated at byte 116: header promises " + promised));
        CHECK_THAT(read_error(tmp / "huge.gz"), Contains("truncated at byte 116: header promises " + promised));
    }
    SECTION("writers refuse what the reader would reject") {
        CHECK_THAT(error_of<DataError>([&] { kitnn::data::write_idx_images(tmp / "w", Bytes(5), 1, 2, 2); }),
                   Contains("got 5 pixels for 1 x 2 x 2 = 4"));
        CHECK_THROWS_AS(kitnn::data::write_idx_images(tmp / "w", {}, 0, 2, 2), DataError);
        CHECK_THROWS_AS(kitnn::data::write_idx_labels(tmp / "w", {}), DataError);
        CHECK_THAT(error_of<DataError>([&] { kitnn::data::write_idx_labels(tmp / "no/such/dir/l", {1}); }),
                   StartsWith(tmp / "no/such/dir/l"));
    }
}

namespace {
// Sets or unsets an environment variable for one scope, restoring the old value.
struct ScopedEnv {
    std::string name, old;
    bool had;
    ScopedEnv(const char* n, const char* value) : name(n) {
        const char* o = std::getenv(n);
        had = o != nullptr;
        if (had) old = o;
        if (value) ::setenv(n, value, 1);
        else ::unsetenv(n);
    }
    ~ScopedEnv() {
        if (had) ::setenv(name.c_str(), old.c_str(), 1);
        else ::unsetenv(name.c_str());
    }
};

// A tiny MNIST-shaped folder: 3 training and 2 test 28x28 images, raw and gzip mixed.
void write_fake_mnist(const TempDir& dir, std::vector<std::uint8_t> test_labels = {7, 2}) {
    kitnn::data::write_idx_images(dir / "train-images-idx3-ubyte.gz", test_pixels(3 * 28 * 28), 3, 28, 28);
    kitnn::data::write_idx_labels(dir / "train-labels-idx1-ubyte", {5, 0, 4});
    kitnn::data::write_idx_images(dir / "t10k-images-idx3-ubyte", test_pixels(2 * 28 * 28), 2, 28, 28);
    kitnn::data::write_idx_labels(dir / "t10k-labels-idx1-ubyte.gz", test_labels);
}
}  // namespace

TEST_CASE("find_mnist_dir / load_mnist: finding the files, and saying how to get them", "[idx]") {
    TempDir empty, fake;
    write_fake_mnist(fake);

    SECTION("a folder without the files: the message says how to get them") {
        const auto msg = error_of<DataError>([&] { kitnn::data::find_mnist_dir(empty.path.string()); });
        CHECK_THAT(msg, StartsWith(empty.path.string()));
        CHECK_THAT(msg, Contains("train-images-idx3-ubyte[.gz]"));
        CHECK_THAT(msg, Contains("scripts/download_mnist.sh"));
        CHECK_THAT(msg, Contains("--data DIR"));
        CHECK_THAT(msg, Contains("KITNN_MNIST_DIR"));
        CHECK_THAT(error_of<DataError>([&] { kitnn::data::load_mnist(empty.path.string()); }),
                   Contains("scripts/download_mnist.sh"));
    }
    SECTION("a folder that does not exist") {
        const auto msg = error_of<DataError>([&] { kitnn::data::find_mnist_dir(empty / "nope"); });
        CHECK_THAT(msg, StartsWith(empty / "nope"));
        CHECK_THAT(msg, Contains("does not exist"));
        CHECK_THAT(msg, Contains("scripts/download_mnist.sh"));
    }
    SECTION("flag, then KITNN_MNIST_DIR, then data/mnist") {
        CHECK(kitnn::data::find_mnist_dir(fake.path.string()) == fake.path.string());
        {
            ScopedEnv env("KITNN_MNIST_DIR", fake.path.string().c_str());
            CHECK(kitnn::data::find_mnist_dir("") == fake.path.string());
            // The flag wins over the environment.
            CHECK_THROWS_WITH(kitnn::data::find_mnist_dir(empty.path.string()),
                              StartsWith(empty.path.string()));
        }
        {
            ScopedEnv env("KITNN_MNIST_DIR", nullptr);
            if (!fs::exists("data/mnist"))
                CHECK_THROWS_WITH(kitnn::data::find_mnist_dir(""), StartsWith("data/mnist"));
        }
    }
    SECTION("load_mnist on raw and gzipped files") {
        const auto m = kitnn::data::load_mnist(fake.path.string());
        CHECK(m.train.size() == 3);
        CHECK(m.test.size() == 2);
        CHECK(m.train.labels == std::vector<std::uint8_t>{5, 0, 4});
        CHECK(m.test.labels[0] == 7);
    }
    SECTION("load_mnist rejects a label that is not a digit") {
        TempDir bad;
        write_fake_mnist(bad, {7, 12});
        const auto msg = error_of<DataError>([&] { kitnn::data::load_mnist(bad.path.string()); });
        CHECK_THAT(msg, StartsWith(bad / "t10k-labels-idx1-ubyte.gz"));
        CHECK_THAT(msg, Contains("label 12 at index 1"));
    }
}

TEST_CASE("real MNIST (needs KITNN_MNIST_DIR)", "[.][idx][mnist]") {
    if (!std::getenv("KITNN_MNIST_DIR")) {
        WARN("KITNN_MNIST_DIR not set: real-MNIST check skipped");
        return;
    }
    const auto m = kitnn::data::load_mnist(kitnn::data::find_mnist_dir(""));
    REQUIRE(m.train.size() == 60000);
    REQUIRE(m.test.size() == 10000);
    for (const auto* d : {&m.train, &m.test}) {
        CHECK(d->images.dimension(1) == 1);
        CHECK(d->images.dimension(2) == 28);
        CHECK(d->images.dimension(3) == 28);
        CHECK(d->labels.size() == static_cast<std::size_t>(d->size()));
    }
    CHECK(m.test.labels[0] == 7);
    CHECK(m.train.labels[0] == 5);

    // Every class is present in roughly equal numbers (train: 5421..6742, test: 892..1135).
    std::array<int, 10> train_hist{}, test_hist{};
    for (auto l : m.train.labels) ++train_hist[l];
    for (auto l : m.test.labels) ++test_hist[l];
    for (int c = 0; c < 10; ++c) {
        INFO("class " << c);
        CHECK(train_hist[c] >= 5000);
        CHECK(train_hist[c] <= 7000);
        CHECK(test_hist[c] >= 800);
        CHECK(test_hist[c] <= 1200);
    }
    CHECK(train_hist[1] == 6742);
    CHECK(test_hist[1] == 1135);

    // Pixels in [0,1], the well-known mean intensity 0.1307 of the training set.
    const Eigen::Tensor<float, 0, Eigen::RowMajor> mean = m.train.images.mean();
    const Eigen::Tensor<float, 0, Eigen::RowMajor> mx = m.train.images.maximum();
    const Eigen::Tensor<float, 0, Eigen::RowMajor> mn = m.train.images.minimum();
    CHECK(mean() == Approx(0.1307).margin(0.0005));
    CHECK(mx() == 1.0f);
    CHECK(mn() == 0.0f);
}

// ---------------------------------------------------------------------------- images

TEST_CASE("write_png_grey / load_grey round trip, atomic write", "[image]") {
    TempDir tmp;
    const int w = 7, h = 5;
    const Bytes px = test_pixels(w * h);
    const std::string path = tmp / "grey.png";
    kitnn::io::write_png_grey(path, w, h, px);
    kitnn::io::write_png_grey(path, w, h, px);  // overwriting an existing file works too

    const auto img = kitnn::io::load_grey(path);
    REQUIRE(img.width == w);
    REQUIRE(img.height == h);
    REQUIRE(img.pixels.size() == px.size());
    for (std::size_t i = 0; i < px.size(); ++i) REQUIRE(img.pixels[i] == Approx(px[i] / 255.0).margin(1e-6));

    // Nothing but the PNG is left behind (no path.tmp.<pid>).
    int files = 0;
    for (const auto& e : fs::directory_iterator(tmp.path)) {
        ++files;
        CHECK(e.path().filename() == "grey.png");
    }
    CHECK(files == 1);
}

TEST_CASE("load_grey: RGB, RGBA over white, grey+alpha, JPEG", "[image]") {
    TempDir tmp;
    SECTION("RGB with BT.601 luma weights") {
        const Bytes rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 10, 20, 30};
        REQUIRE(stbi_write_png((tmp / "rgb.png").c_str(), 3, 2, 3, rgb.data(), 3 * 3));
        const auto img = kitnn::io::load_grey(tmp / "rgb.png");
        REQUIRE(img.width == 3);
        REQUIRE(img.height == 2);
        CHECK(img.pixels[0] == Approx(0.299).margin(1e-5));
        CHECK(img.pixels[1] == Approx(0.587).margin(1e-5));
        CHECK(img.pixels[2] == Approx(0.114).margin(1e-5));
        CHECK(img.pixels[3] == Approx(1.0).margin(1e-5));
        CHECK(img.pixels[4] == Approx(0.0).margin(1e-6));
        CHECK(img.pixels[5] == Approx((0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255).margin(1e-5));
    }
    SECTION("RGBA: transparency is composited over white") {
        const Bytes rgba = {0, 0, 0, 0,   0, 0, 0, 255,   0, 0, 0, 128,   255, 255, 255, 0};
        REQUIRE(stbi_write_png((tmp / "rgba.png").c_str(), 4, 1, 4, rgba.data(), 4 * 4));
        const auto img = kitnn::io::load_grey(tmp / "rgba.png");
        REQUIRE(img.pixels.size() == 4);
        CHECK(img.pixels[0] == Approx(1.0).margin(1e-6));  // transparent -> white page
        CHECK(img.pixels[1] == Approx(0.0).margin(1e-6));  // opaque black ink
        CHECK(img.pixels[2] == Approx(1.0 - 128.0 / 255).margin(1e-5));
        CHECK(img.pixels[3] == Approx(1.0).margin(1e-6));
    }
    SECTION("grey + alpha") {
        const Bytes ga = {0, 0, 0, 255, 200, 255};
        REQUIRE(stbi_write_png((tmp / "ga.png").c_str(), 3, 1, 2, ga.data(), 3 * 2));
        const auto img = kitnn::io::load_grey(tmp / "ga.png");
        CHECK(img.pixels[0] == Approx(1.0).margin(1e-6));
        CHECK(img.pixels[1] == Approx(0.0).margin(1e-6));
        CHECK(img.pixels[2] == Approx(200.0 / 255).margin(1e-6));
    }
    SECTION("JPEG") {
        const Bytes grey(16 * 16, 128);
        REQUIRE(stbi_write_jpg((tmp / "g.jpg").c_str(), 16, 16, 1, grey.data(), 100));
        const auto img = kitnn::io::load_grey(tmp / "g.jpg");
        REQUIRE(img.width == 16);
        REQUIRE(img.height == 16);
        for (float v : img.pixels) REQUIRE(v == Approx(128.0 / 255).margin(3.0 / 255));
    }
}

TEST_CASE("image errors name the file and the reason", "[image]") {
    TempDir tmp;
    SECTION("not an image") {
        std::ofstream(tmp / "notes.png") << "this is text, not a PNG\n";
        const auto msg = error_of<ImageError>([&] { kitnn::io::load_grey(tmp / "notes.png"); });
        CHECK_THAT(msg, StartsWith(tmp / "notes.png"));
        CHECK_THAT(msg, Contains("cannot read image: unknown image type"));
    }
    SECTION("missing file") {
        const auto msg = error_of<ImageError>([&] { kitnn::io::load_grey(tmp / "nope.png"); });
        CHECK_THAT(msg, StartsWith(tmp / "nope.png"));
        CHECK_THAT(msg, Contains("cannot open: No such file or directory"));
    }
    SECTION("truncated PNG") {
        kitnn::io::write_png_grey(tmp / "ok.png", 8, 8, test_pixels(64));
        const Bytes png = read_file(tmp / "ok.png");
        write_file(tmp / "cut.png", Bytes(png.begin(), png.begin() + static_cast<long>(png.size() / 2)));
        CHECK_THAT(error_of<ImageError>([&] { kitnn::io::load_grey(tmp / "cut.png"); }),
                   StartsWith(tmp / "cut.png"));
    }
    SECTION("write into a missing folder, or with the wrong pixel count") {
        const std::string path = tmp / "no/such/dir/x.png";
        const auto msg = error_of<ImageError>([&] { kitnn::io::write_png_grey(path, 2, 2, Bytes(4)); });
        CHECK_THAT(msg, StartsWith(path));
        CHECK_THAT(msg, Contains("No such file or directory"));
        CHECK_THAT(error_of<ImageError>([&] { kitnn::io::write_png_grey(tmp / "x.png", 2, 2, Bytes(3)); }),
                   Contains("3 pixels for 2x2"));
        CHECK_FALSE(fs::exists(tmp / "x.png"));
    }
}
