// Regression tests for what fuzzing found (tests/fuzz, docs/reliability.md). Each
// input is the (minimised or original) file libFuzzer reported; the committed copies
// are also in the fuzz seed corpus, tests/fuzz/corpus/.
#include <kitnn/io/image.hpp>
#include <kitnn/io/model_file.hpp>

#include <catch2/catch.hpp>

#include <stb_image_write.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using kitnn::io::ImageError;
using kitnn::io::load_grey;

namespace {

using Bytes = std::vector<unsigned char>;

// A file in a fresh folder under the system temp dir, removed at scope end.
struct TempFile {
    fs::path dir, path;
    explicit TempFile(const std::string& name) {
        static std::atomic<int> counter{0};
        dir = fs::temp_directory_path() /
              ("kitnn_test_fuzzreg_" + std::to_string(::getpid()) + "_" +
               std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "_" +
               std::to_string(counter++));
        fs::create_directories(dir);
        path = dir / name;
    }
    ~TempFile() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    void write(const Bytes& b) const {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
        REQUIRE(out.good());
    }
};

Bytes read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in.good());
    return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string load_error(const fs::path& p) {
    try {
        load_grey(p.string());
    } catch (const ImageError& e) {
        return e.what();
    }
    return "(loaded without error)";
}

const fs::path kCorpus = fs::path(KITNN_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "image";

}  // namespace

TEST_CASE("fuzz regression: a PNM with zero width is refused, not returned as a 0x0 image", "[image][fuzz]") {
    // stb_image accepts "P5\n" followed by no width digits and returns a 0x0 image.
    TempFile f("zero_width.pgm");
    f.write({0x50, 0x35, 0x0a, 0x00, 0x40, 0x80, 0xc0, 0xff, 0x7a, 0x02, 0x07});
    const std::string err = load_error(f.path);
    CHECK_THAT(err, Contains(f.path.string()) && Contains("no pixels") && Contains("0x0"));
}

TEST_CASE("fuzz regression: JPEG Huffman tables with more than 256 codes are refused before stb decodes",
          "[image][fuzz]") {
    // Debian 12's stb_image 2.27 would write past its 257-entry Huffman tables (heap
    // corruption, upstream nothings/stb#1289, #1291). The second file ends inside the
    // table's 16 counts: stb reads the missing bytes as zeros, so must the check.
    // The third starts with a 0xFF fill byte before the start-of-image marker (FF FF D8),
    // which stb accepts: the check must not take it for a non-JPEG.
    // The fourth (a mutated progressive JPEG) has a DHT whose tables run past the
    // segment's declared length: stb reads on into the next bytes, so must the check.
    for (const char* name : {"regress_jpeg_dht_overflow.jpg", "regress_jpeg_dht_overflow_at_eof.jpg",
                             "regress_jpeg_dht_overflow_fill_before_soi.jpg",
                             "regress_jpeg_dht_past_segment.jpg"}) {
        INFO(name);
        const fs::path p = kCorpus / name;
        REQUIRE(fs::exists(p));
        CHECK_THAT(load_error(p), Contains("Huffman table declares") && Contains("at most 256"));
        std::FILE* fp = std::fopen(p.string().c_str(), "rb");
        REQUIRE(fp != nullptr);
        CHECK_FALSE(kitnn::io::detail::check_jpeg_huffman_tables(fp).empty());
        std::fclose(fp);
    }
}

TEST_CASE("fuzz regression: a JPEG scan using a Huffman table no segment defines is refused",
          "[image][fuzz]") {
    // 660 bytes from a 6-minute fuzz run: its scan names AC table 0, its DHT defines AC 1
    // (twice) but not 0. stb 2.27 then decodes with the uninitialised table: the outcome
    // depends on what the heap held (a garbage image, "bad huffman code", or stb's own
    // assert at stb_image.h:2115, live in Debian's libstb.so, aborting the program).
    const fs::path p = kCorpus / "regress_jpeg_undefined_huffman_table.jpg";
    REQUIRE(fs::file_size(p) == 660);
    CHECK_THAT(load_error(p), Contains(p.string()) && Contains("corrupt JPEG") &&
                                  Contains("component 1 uses AC Huffman table 0") &&
                                  Contains("no earlier segment defines"));
    // The same for a missing DC table and a missing quantisation table: the valid
    // baseline JPEG below with one slot number raised past what its segments define.
    TempFile jpg("slots.jpg");
    std::vector<unsigned char> px(16 * 8);
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<unsigned char>(i * 5);
    REQUIRE(stbi_write_jpg(jpg.path.string().c_str(), 16, 8, 1, px.data(), 90) != 0);
    const Bytes good = read_all(jpg.path);
    auto find_marker = [&](unsigned char m) {
        for (std::size_t i = 0; i + 1 < good.size(); ++i)
            if (good[i] == 0xFF && good[i + 1] == m) return i;
        FAIL("marker not found");
        return std::size_t(0);
    };
    const std::size_t sos = find_marker(0xDA), sof = find_marker(0xC0);
    Bytes b = good;
    b[sos + 6] = 0x30;  // SOS component 1: DC slot 3, AC slot 0 (the writer defines DC 0, 1)
    jpg.write(b);
    CHECK_THAT(load_error(jpg.path), Contains("uses DC Huffman table 3"));
    b = good;
    b[sof + 12] = 0x02;  // SOF component 1 (of 3): quantisation slot 2 (DQT defines 0, 1)
    jpg.write(b);
    CHECK_THAT(load_error(jpg.path), Contains("uses quantisation table 2"));
    jpg.write(good);
    CHECK(load_grey(jpg.path.string()).width == 16);
}

TEST_CASE("the JPEG table check passes real JPEGs and ignores other formats", "[image][fuzz]") {
    TempFile jpg("ok.jpg");
    std::vector<unsigned char> px(16 * 12 * 3);
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<unsigned char>(i * 7);
    REQUIRE(stbi_write_jpg(jpg.path.string().c_str(), 16, 12, 3, px.data(), 90) != 0);
    // Progressive JPEGs (made by libjpeg through python3-opencv) define each AC table
    // only before its first AC scan: the first DC scan names an undefined AC slot that
    // it never reads, and must pass.
    for (const fs::path& p : {jpg.path, kCorpus / "rgb.jpg", kCorpus / "progressive_rgb.jpg",
                              kCorpus / "progressive_grey.jpg", kCorpus / "grey.png", kCorpus / "pixel.gif"}) {
        INFO(p.string());
        std::FILE* fp = std::fopen(p.string().c_str(), "rb");
        REQUIRE(fp != nullptr);
        CHECK(kitnn::io::detail::check_jpeg_tables(fp).empty());
        std::fclose(fp);
        const auto img = load_grey(p.string());
        CHECK(img.width > 0);
    }
    CHECK(load_grey(jpg.path.string()).width == 16);
}

TEST_CASE("fuzz regression: a 35-byte GIF claiming 17937x21071 pixels is refused before allocating",
          "[image][fuzz]") {
    // stb would allocate and clear ~3.4 GB for the logical screen before reading a pixel.
    TempFile f("huge_screen.gif");
    f.write(read_all(kCorpus / "regress_gif_huge_screen.gif"));
    CHECK(fs::file_size(f.path) == 35);
    const std::string err = load_error(f.path);
    CHECK_THAT(err, Contains("17937x21071") && Contains(std::to_string(kitnn::io::kMaxImagePixels)));
}

TEST_CASE("fuzz regression: an 81-byte PNG declaring a 1.4 GB IDAT chunk is refused before allocating",
          "[image][fuzz]") {
    // Debian 12's stb_image 2.27 grows its buffer to the declared chunk length before
    // reading the chunk (libFuzzer: out-of-memory, malloc(1417174627)).
    const fs::path p = kCorpus / "regress_png_huge_idat.png";
    REQUIRE(fs::file_size(p) == 81);
    CHECK_THAT(load_error(p), Contains("corrupt PNG") && Contains("'IDAT' declares 1417174627 bytes"));
    // Every committed PNG passes the check and still loads.
    for (const char* name : {"grey.png", "grey_alpha.png", "rgb.png", "rgba.png"}) {
        INFO(name);
        std::FILE* fp = std::fopen((kCorpus / name).string().c_str(), "rb");
        REQUIRE(fp != nullptr);
        CHECK(kitnn::io::detail::check_png_chunks(fp).empty());
        std::fclose(fp);
        CHECK(load_grey((kCorpus / name).string()).width > 0);
    }
    // A chunk that just fits is fine; one byte more is not (a 1x1 grey PNG made by stb,
    // with its IDAT length raised until it passes the end of the file).
    TempFile f("one_pixel.png");
    const unsigned char pixel = 200;
    REQUIRE(stbi_write_png(f.path.string().c_str(), 1, 1, 1, &pixel, 1) != 0);
    Bytes b = read_all(f.path);
    CHECK(load_grey(f.path.string()).width == 1);
    const std::size_t at = 8 + 8 + 13 + 4;  // signature, IHDR header + data + CRC: IDAT's length
    REQUIRE(std::string(b.begin() + long(at) + 4, b.begin() + long(at) + 8) == "IDAT");
    const std::size_t left = b.size() - (at + 8);  // bytes after IDAT's length and type
    b[at] = 0, b[at + 1] = 0, b[at + 2] = std::uint8_t(((left + 1) >> 8) & 0xFF);
    b[at + 3] = std::uint8_t((left + 1) & 0xFF);
    f.write(b);
    CHECK_THAT(load_error(f.path), Contains("'IDAT' declares " + std::to_string(left + 1) + " bytes"));
}

TEST_CASE("fuzz regression: a model file with no layers is refused, naming the file", "[modelfile][fuzz]") {
    // It used to load, and Sequential::predict then read layers_.back() of the empty layer
    // list (UBSan: offset on a null pointer). Now the loader refuses it, saving refuses an
    // empty model, and predict checks too.
    const fs::path p = fs::path(KITNN_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "model" / "regress_zero_layers";
    REQUIRE(fs::exists(p));
    CHECK_THROWS_AS(kitnn::load_model<float>(p.string()), kitnn::ModelFileError);
    CHECK_THROWS_WITH(kitnn::load_model<float>(p.string()),
                      Contains("regress_zero_layers") && Contains("no layers"));

    kitnn::Sequential<float> empty(kitnn::Shape::image(1, 28, 28));
    CHECK_THROWS_WITH(kitnn::serialize_model(empty), Contains("no layers"));
    kitnn::Tensor<float> x(1, 1, 28, 28);
    x.setZero();
    CHECK_THROWS_AS(empty.predict(x), std::logic_error);
}
