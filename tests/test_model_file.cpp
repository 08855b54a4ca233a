// Model files: round trip, every corruption case, and a committed golden file
// that must keep loading with identical predictions (format compatibility).
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace kitnn;
namespace fs = std::filesystem;

namespace {

// Every layer type the format knows, with non-default hyperparameters.
template <class T>
Sequential<T> every_layer_model(std::uint64_t seed) {
    using K = std::array<int, 2>;
    Sequential<T> m(Shape::image(2, 9, 8), seed);
    m.template add<Conv2D>(3, K{3, 2}, Activation::relu, Padding::same, 2, Init::he_normal);
    m.template add<ReLU>();
    m.template add<MaxPool2D>(K{2, 2}, K{1, 1});
    m.template add<Flatten>();
    m.template add<Dense>(7, Activation::relu, Init::he_uniform);
    m.template add<Dropout>(0.25);
    m.template add<Dense>(4);
    m.template add<Softmax>();
    return m;
}

Tensor<float> fixed_input(Eigen::Index n) {
    Tensor<float> x(n, 2, 9, 8);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 37 % 101) / 50.0 - 1.0);
    return x;
}

fs::path temp_dir() {
    const char* t = std::getenv("KITNN_TEST_TMP");
    fs::path p = t ? fs::path(t) : fs::temp_directory_path() / "kitnn_tests";
    fs::create_directories(p);
    return p;
}

std::vector<char> read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_all(const fs::path& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(b.data(), std::streamsize(b.size()));
}

std::string load_error(const fs::path& p) {
    // Returns the loader's message, or "(no error)".
    try {
        load_model<float>(p.string());
    } catch (const ModelFileError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("save/load round trip rebuilds the network and gives identical predictions", "[modelfile]") {
    auto m = every_layer_model<float>(5);
    const auto x = fixed_input(3);
    const Tensor<float> before = m.forward(x, false);
    const fs::path p = temp_dir() / "roundtrip.kitnn";
    save_model(p.string(), m, {{"model", "every_layer"}, {"note", "a b c"}});
    REQUIRE_FALSE(fs::exists(p.string() + ".tmp." + std::to_string(::getpid())));

    Metadata meta;
    auto l = load_model<float>(p.string(), &meta);
    CHECK(meta["model"] == "every_layer");
    CHECK(meta["note"] == "a b c");
    REQUIRE(l.size() == m.size());
    CHECK(l.summary() == m.summary());
    for (size_t i = 0; i < m.size(); ++i) {
        CHECK(l.layer(i).type() == m.layer(i).type());
        CHECK(l.layer(i).config().items() == m.layer(i).config().items());
    }
    const Tensor<float> after = l.forward(x, false);
    for (Eigen::Index i = 0; i < before.size(); ++i) CHECK(after.data()[i] == before.data()[i]);
    // Saving the loaded model again gives the same bytes.
    CHECK(serialize_model(l, meta) == read_all(p));
}

TEST_CASE("double models round trip too, and loading with the wrong scalar type fails", "[modelfile]") {
    auto m = every_layer_model<double>(6);
    const fs::path p = temp_dir() / "double.kitnn";
    save_model(p.string(), m);
    auto l = load_model<double>(p.string());
    CHECK(l.param_count() == m.param_count());
    const std::string err = load_error(p);
    CHECK_THAT(err, Catch::Contains("stores float64 weights") && Catch::Contains("float32 model"));
}

TEST_CASE("corrupted, truncated, foreign and newer files are refused with a clear message", "[modelfile]") {
    auto m = every_layer_model<float>(7);
    const fs::path p = temp_dir() / "good.kitnn", bad = temp_dir() / "bad.kitnn";
    save_model(p.string(), m);
    const auto good = read_all(p);

    SECTION("missing file") {
        CHECK_THAT(load_error(temp_dir() / "no_such.kitnn"), Catch::Contains("cannot open"));
    }
    SECTION("wrong magic") {
        auto b = good;
        b[0] = 'X';
        write_all(bad, b);
        CHECK_THAT(load_error(bad), Catch::Contains("not a kitnn model file"));
        write_all(bad, {});
        CHECK_THAT(load_error(bad), Catch::Contains("not a kitnn model file"));
    }
    SECTION("truncated at every length gives an error, never a crash") {
        for (size_t n = 0; n < good.size(); ++n) {
            write_all(bad, std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(n)));
            const std::string e = load_error(bad);
            INFO("length " << n << ": " << e);
            const bool clear = e.find("truncated") != std::string::npos ||
                               e.find("checksum") != std::string::npos ||
                               e.find("wrong magic") != std::string::npos;  // under 8 bytes
            CHECK(clear);
            CHECK_THAT(e, Catch::Contains(bad.string()));
        }
    }
    SECTION("a flipped bit in the weights fails the checksum") {
        auto b = good;
        b[b.size() - 20] ^= 0x10;
        write_all(bad, b);
        CHECK_THAT(load_error(bad), Catch::Contains("checksum mismatch"));
    }
    SECTION("a newer format version is refused before anything else is read") {
        auto b = good;
        b[8] = char(kModelFormatVersion + 1);  // version u32 little-endian at offset 8
        write_all(bad, b);
        CHECK_THAT(load_error(bad), Catch::Contains("version " + std::to_string(kModelFormatVersion + 1) +
                                                    " is not supported"));
    }
    SECTION("a consistent file with an unknown layer type names it") {
        // Rename "Softmax" to "Softmix" and fix the checksum: parsing must name the layer.
        auto b = good;
        const std::string from = "Softmax";
        auto it = std::search(b.begin(), b.end(), from.begin(), from.end());
        REQUIRE(it != b.end());
        it[5] = 'i';
        const std::uint32_t crc = detail::crc32_of(b.data(), b.size() - 4);
        for (int i = 0; i < 4; ++i) b[b.size() - 4 + size_t(i)] = char((crc >> (8 * i)) & 0xff);
        write_all(bad, b);
        const std::string e = load_error(bad);
        CHECK_THAT(e, Catch::Contains("layer 7 (Softmix)") && Catch::Contains("unknown layer type"));
    }
}

TEST_CASE("hyperparameters the file cannot back are refused before any allocation", "[modelfile]") {
    // A consistent (checksummed) file whose Dense layer claims 2^33 units: loading
    // must fail on the size check, not try to allocate 2^33 x 11 floats.
    auto craft = [](const std::string& units) {
        detail::ByteWriter w;
        w.bytes(kModelMagic, 8);
        w.u32(kModelFormatVersion);
        w.u32(4);
        w.u32(0);  // no metadata
        w.u32(1);
        w.i64(10);  // input (10)
        w.u32(1);   // one layer
        w.str("Dense");
        w.u32(3);
        w.str("units");
        w.str(units);
        w.str("activation");
        w.str("linear");
        w.str("init");
        w.str("glorot_uniform");
        w.u32(0);
        const auto crc = detail::crc32_of(w.buffer().data(), w.buffer().size());
        w.u32(crc);
        return w.buffer();
    };
    const fs::path bad = temp_dir() / "huge.kitnn";
    write_all(bad, craft("8589934592"));
    CHECK_THAT(load_error(bad), Catch::Contains("layer 0 (Dense)"));
    write_all(bad, craft("16777216"));  // in range, but 2^24 x 11 weights are not in the file
    CHECK_THAT(load_error(bad), Catch::Contains("layer 0 (Dense)") && Catch::Contains("weights"));
    write_all(bad, craft("3"));  // fits the size check, then the missing tensors are named
    CHECK_THAT(load_error(bad), Catch::Contains("bytes left") || Catch::Contains("tensors"));
}

TEST_CASE("a convolution whose kernel or channel product would overflow is refused", "[modelfile]") {
    // 2^16 input channels and a 2^24 x 2^24 kernel: C*KH*KW overflows 64 bits. The
    // loader must say so in its own words, not crash or throw bad_alloc.
    auto craft = [](long long channels, const std::string& k) {
        detail::ByteWriter w;
        w.bytes(kModelMagic, 8);
        w.u32(kModelFormatVersion);
        w.u32(4);
        w.u32(0);
        w.u32(3);
        w.i64(channels);
        w.i64(28);
        w.i64(28);
        w.u32(1);
        w.str("Conv2D");
        const std::pair<const char*, std::string> cfg[] = {
            {"filters", "1"}, {"kernel_h", k}, {"kernel_w", k}, {"stride", "1"},
            {"padding", "same"}, {"activation", "linear"}, {"init", "glorot_uniform"}};
        w.u32(7);
        for (auto& kv : cfg) {
            w.str(kv.first);
            w.str(kv.second);
        }
        w.u32(0);
        const auto crc = detail::crc32_of(w.buffer().data(), w.buffer().size());
        w.u32(crc);
        return w.buffer();
    };
    const fs::path bad = temp_dir() / "conv.kitnn";
    write_all(bad, craft(65536, "16777216"));
    CHECK_THAT(load_error(bad), Catch::Contains("layer 0 (Conv2D)") && Catch::Contains("weights, more than"));
    write_all(bad, craft(1, "1024"));  // a 1024x1024 kernel on 28x28 ("same"): 3 GB of im2col
    CHECK_THAT(load_error(bad), Catch::Contains("layer 0 (Conv2D)") && Catch::Contains("weights, more than"));
    // Even where the file could back the weights, the im2col of one image is bounded
    // (Layer::footprint): 1 x 1024 x 1024 taps x 28 x (28 + 1023) columns.
    Config c = Conv2D<float>(1, {1024, 1024}, Activation::linear, Padding::same).config();
    CHECK_THAT(check_layer_limits("Conv2D", c, Shape::image(1, 28, 28), std::uint64_t(1) << 40, 4),
               Catch::Contains("work buffer of " + std::to_string(1024LL * 1024 * 28 * 1051)));
    // A "same" kernel larger than its input is fine when small (TensorFlow allows it,
    // and Sequential::add too): such a model saves AND loads.
    Sequential<float> same(Shape::image(1, 3, 3));
    same.add<Conv2D>(2, std::array<int, 2>{5, 5}, Activation::linear, Padding::same);
    CHECK(deserialize_model<float>(serialize_model(same), "same").output_shape() == Shape::image(2, 3, 3));
}

TEST_CASE("load_model refuses what is not a regular file", "[modelfile]") {
    CHECK_THAT(load_error("/dev/zero"), Catch::Contains("not a regular file"));
    CHECK_THAT(load_error(temp_dir()), Catch::Contains("not a regular file"));
}

TEST_CASE("predict() of a model ending in Softmax returns its probabilities unchanged", "[modelfile]") {
    auto m = every_layer_model<float>(3);  // ends in Softmax
    const auto x = fixed_input(2);
    const Tensor<float> y = m.forward(x, false);
    const Tensor<float> p = m.predict(x);
    for (Eigen::Index i = 0; i < y.size(); ++i) CHECK(p.data()[i] == Approx(y.data()[i]).margin(1e-7));
}

// The golden file was written by format version 1 (tests/data/golden_v1.kitnn) with
// the predictions below. Regenerate only on purpose: KITNN_WRITE_GOLDEN=1.
TEST_CASE("the committed version-1 golden model still loads and predicts the same", "[modelfile][golden]") {
    const std::string dir = KITNN_TEST_DATA_DIR;
    const std::string model = dir + "/golden_v1.kitnn", expected = dir + "/golden_v1_expected.txt";
    const auto x = fixed_input(2);
    // The writer now writes a newer version: the version-1 file is frozen.
    if (std::getenv("KITNN_WRITE_GOLDEN") && kModelFormatVersion == 1) {
        auto m = every_layer_model<float>(2026);
        save_model(model, m, {{"model", "golden_v1"}});
        const Tensor<float> y = m.forward(x, false);
        std::ofstream f(expected);
        f.precision(9);
        for (Eigen::Index i = 0; i < y.size(); ++i) f << y.data()[i] << "\n";
    }
    Metadata meta;
    auto m = load_model<float>(model, &meta);
    CHECK(meta["model"] == "golden_v1");
    CHECK(m.param_count() == every_layer_model<float>(1).param_count());
    const Tensor<float> y = m.forward(x, false);
    std::ifstream f(expected);
    REQUIRE(f);
    for (Eigen::Index i = 0; i < y.size(); ++i) {
        double v;
        REQUIRE(f >> v);
        CHECK(y.data()[i] == Approx(v).epsilon(1e-6));
    }
}
