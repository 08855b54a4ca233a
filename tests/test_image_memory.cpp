// io::decode_grey (an image in memory: kitnn_serve's request bodies) against load_grey
// (the same image as a file): the same pixels, or the same refusal, for every image of the
// fuzz seed corpus (the fuzz findings included) and the committed own digits.
#include <kitnn/io/image.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using kitnn::io::decode_grey;
using kitnn::io::GreyImage;
using kitnn::io::ImageError;
using kitnn::io::load_grey;

namespace {

std::vector<char> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in.good());
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The image, or "error: <message without the name>".
template <class F>
std::pair<GreyImage, std::string> attempt(F&& load, const std::string& name) {
    try {
        return {load(), ""};
    } catch (const ImageError& e) {
        std::string msg = e.what();
        if (msg.rfind(name, 0) == 0) msg = msg.substr(name.size());
        return {GreyImage{}, "error" + msg};
    }
}

}  // namespace

TEST_CASE("decode_grey: the same pixels or the same error as load_grey, for every test image", "[image]") {
    std::vector<fs::path> files;
    for (const char* dir : {"/../fuzz/corpus/image", "/own_digits"})
        for (const auto& e : fs::directory_iterator(std::string(KITNN_TEST_DATA_DIR) + dir))
            if (e.is_regular_file() && e.path().extension() != ".csv") files.push_back(e.path());
    REQUIRE(files.size() >= 60);
    int decoded = 0, refused = 0;
    for (const auto& f : files) {
        INFO(f.string());
        const std::vector<char> bytes = read_bytes(f);
        const auto from_file = attempt([&] { return load_grey(f.string()); }, f.string());
        const auto from_memory = attempt([&] { return decode_grey(bytes.data(), bytes.size(), "body"); }, "body");
        CHECK(from_memory.second == from_file.second);
        CHECK(from_memory.first.width == from_file.first.width);
        CHECK(from_memory.first.height == from_file.first.height);
        CHECK(from_memory.first.pixels == from_file.first.pixels);
        (from_file.second.empty() ? decoded : refused)++;
    }
    CHECK(decoded >= 50);  // the own digits and the corpus's valid images
    CHECK(refused >= 5);   // the corpus's corrupt ones and the fuzz findings
}

TEST_CASE("decode_grey: empty, garbage and truncated input are refused with the given name", "[image]") {
    auto error_of = [](const std::string& bytes) {
        try {
            decode_grey(bytes.data(), bytes.size(), "request body");
        } catch (const ImageError& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    CHECK(error_of("") == "request body: cannot read image: no bytes");
    CHECK_THAT(error_of("hello, not an image"), Catch::Matchers::StartsWith("request body: cannot read image:"));
    const std::vector<char> png = read_bytes(std::string(KITNN_TEST_DATA_DIR) + "/own_digits/own_00.png");
    CHECK_THAT(error_of(std::string(png.data(), 100)), Catch::Matchers::StartsWith("request body: cannot read image:"));
}
