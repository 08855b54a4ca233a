// Tests for kitnn/data/preprocess.hpp: MNIST-style preprocessing of users' digit images
// (background detection, contrast, crop, 20-px size normalisation, centring by mass),
// resize_area and the labels CSV reader; plus the generator of the committed set
// tests/data/own_digits/ ("own digits": MNIST test digits redrawn the way people draw).
//
// Regenerate the committed set (needs MNIST; deterministic, same pixels every time):
//   export KITNN_MNIST_DIR=/path/to/mnist KITNN_OWN_DIGITS_OUT=tests/data/own_digits
//   build/tests/kitnn_tests "[make_own_digits]"
#include <kitnn/data/idx.hpp>
#include <kitnn/data/preprocess.hpp>
#include <kitnn/io/image.hpp>

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using kitnn::data::PreprocessError;
using kitnn::data::PreprocessOptions;
using kitnn::data::PreprocessReport;
using kitnn::data::preprocess_digit;
using kitnn::io::GreyImage;

namespace {

// Each test's scratch folder (tests/temp_dir.hpp), named after this file.
struct TempDir : kitnn_test::TempDir {
    TempDir() : kitnn_test::TempDir("kitnn_test_pre") {}
};

double clamp01(double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

// Anti-aliased thick polyline ("pen strokes") on a w x h coverage canvas in [0,1]:
// coverage = 1 inside radius r of a segment, falling off linearly over one pixel.
std::vector<float> draw_strokes(int w, int h, const std::vector<std::array<double, 4>>& segs, double r) {
    std::vector<float> c(std::size_t(w) * std::size_t(h), 0.0f);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const double px = x + 0.5, py = y + 0.5;
            double best = 1e30;
            for (const auto& s : segs) {
                const double dx = s[2] - s[0], dy = s[3] - s[1];
                const double len2 = dx * dx + dy * dy;
                double t = len2 > 0 ? ((px - s[0]) * dx + (py - s[1]) * dy) / len2 : 0;
                t = std::clamp(t, 0.0, 1.0);
                const double ex = s[0] + t * dx - px, ey = s[1] + t * dy - py;
                best = std::min(best, std::sqrt(ex * ex + ey * ey));
            }
            c[std::size_t(y) * std::size_t(w) + std::size_t(x)] = float(clamp01(r + 0.5 - best));
        }
    return c;
}

struct Moments {
    double mass = 0, cy = 0, cx = 0;
    int x0 = 1 << 30, x1 = -1, y0 = 1 << 30, y1 = -1;
};
Moments moments(const GreyImage& im, float threshold = 0.0f) {
    Moments m;
    for (int y = 0; y < im.height; ++y)
        for (int x = 0; x < im.width; ++x) {
            const float p = im.pixels[std::size_t(y) * std::size_t(im.width) + std::size_t(x)];
            m.mass += p, m.cy += p * y, m.cx += p * x;
            if (p > threshold) m.x0 = std::min(m.x0, x), m.x1 = std::max(m.x1, x), m.y0 = std::min(m.y0, y),
                               m.y1 = std::max(m.y1, y);
        }
    if (m.mass > 0) m.cy /= m.mass, m.cx /= m.mass;
    return m;
}

// ---------------------------------------------------------------------------------------
// The "own digits" generator: MNIST test digits redrawn as people make them. Everything is
// derived from one std::mt19937 (whose sequence the standard fixes) through our own
// uniform/normal mappings (std::*_distribution differ between standard libraries), so the
// same MNIST files give the same pixels everywhere.
struct Rng {
    std::mt19937 g;
    explicit Rng(unsigned seed) : g(seed) {}
    double uni() { return double(g()) / 4294967296.0; }
    double uni(double a, double b) { return a + (b - a) * uni(); }
    double normal() {  // Box-Muller
        const double u1 = 1.0 - uni(), u2 = uni();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
};

struct Style {
    const char* what;
    double size_lo, size_hi;  // digit height as a fraction of the canvas height
    double stroke;            // threshold on the smooth upscaled digit: lower = thicker
    int dilate;               // extra "marker" thickening, in % of the digit height
    bool corner;              // pushed towards a corner
    int channels;             // 1 grey, 3 RGB, 4 RGBA (transparent background)
    std::array<int, 3> paper, ink;
    double noise, blur;       // noise sigma in grey levels; blur passes (3x3 box)
};

// Ten ways people hand in a digit; digit k of the set uses style k % 10.
const Style kStyles[10] = {
    {"GIMP: white brush on black", 0.55, 0.75, 0.45, 0, false, 1, {0, 0, 0}, {255, 255, 255}, 0, 0},
    {"black pen on white, small, off-centre", 0.25, 0.35, 0.45, 0, false, 1, {255, 255, 255}, {0, 0, 0}, 0, 1},
    {"blue ballpoint on cream paper, noisy photo", 0.45, 0.65, 0.5, 0, false, 3, {232, 224, 200}, {35, 45, 120}, 2, 1},
    {"thick black marker on white, too large", 0.88, 0.96, 0.3, 4, false, 3, {250, 250, 250}, {10, 10, 10}, 0, 0},
    {"dark ink on a transparent canvas (RGBA)", 0.5, 0.7, 0.45, 0, false, 4, {0, 0, 0}, {20, 20, 30}, 0, 0},
    {"thin white strokes on black, small, in a corner", 0.3, 0.4, 0.62, 0, true, 1, {0, 0, 0}, {255, 255, 255}, 0, 0},
    {"chalk on a green board", 0.5, 0.7, 0.4, 0, false, 3, {45, 75, 55}, {225, 230, 215}, 2, 1},
    {"red pen on grey paper with a shadow", 0.4, 0.6, 0.45, 0, false, 3, {205, 205, 200}, {190, 30, 30}, 0, 0},
    {"pencil on a transparent canvas (RGBA), thick", 0.45, 0.65, 0.3, 2, true, 4, {0, 0, 0}, {80, 80, 85}, 0, 0},
    {"dark grey on light grey, blurred, large", 0.8, 0.9, 0.4, 0, false, 1, {225, 225, 225}, {40, 40, 40}, 2, 2},
};

// Renders MNIST digit `src` (28x28, white on black, [0,1]) in `style`; returns the PNG's
// width, height, channels and bytes.
struct Rendered {
    int w, h, channels;
    std::vector<std::uint8_t> px;
};
Rendered render_own_digit(const float* src, const Style& st, Rng& rng) {
    // The digit's bounding box in the 28x28 source.
    int bx0 = 28, bx1 = -1, by0 = 28, by1 = -1;
    for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x)
            if (src[y * 28 + x] > 0.1f) bx0 = std::min(bx0, x), bx1 = std::max(bx1, x), by0 = std::min(by0, y),
                                        by1 = std::max(by1, y);
    const double bw = bx1 - bx0 + 1, bh = by1 - by0 + 1;

    // Canvas 100-220 px; noisy "photos" at most 150 px, as noise barely compresses in a PNG.
    const double side_max = st.noise > 0 ? 150 : 220;
    const int W = int(rng.uni(100, side_max)), H = int(rng.uni(100, side_max));
    double dh = rng.uni(st.size_lo, st.size_hi) * H, dw = dh * bw / bh;
    if (dw > 0.95 * W) dh *= 0.95 * W / dw, dw = 0.95 * W;
    double ox, oy;  // top-left of the digit on the canvas
    if (st.corner) {
        ox = rng.uni() < 0.5 ? rng.uni(0.02, 0.06) * W : W - dw - rng.uni(0.02, 0.06) * W;
        oy = rng.uni() < 0.5 ? rng.uni(0.02, 0.06) * H : H - dh - rng.uni(0.02, 0.06) * H;
    } else {
        ox = rng.uni(0.02 * W, std::max(0.02 * W, W - dw - 0.02 * W));
        oy = rng.uni(0.02 * H, std::max(0.02 * H, H - dh - 0.02 * H));
    }
    const double s = dh / bh;  // canvas pixels per source pixel

    // Coverage: the digit upscaled bilinearly (a smooth field), then a soft threshold
    // gives clean strokes of a chosen thickness with ~1.5 px anti-aliased edges.
    auto sample = [&](double u, double v) {  // source coordinates, pixel centres at +0.5
        u -= 0.5, v -= 0.5;
        const int iu = int(std::floor(u)), iv = int(std::floor(v));
        const double fu = u - iu, fv = v - iv;
        auto at = [&](int x, int y) { return (x < 0 || y < 0 || x > 27 || y > 27) ? 0.0 : double(src[y * 28 + x]); };
        return (1 - fv) * ((1 - fu) * at(iu, iv) + fu * at(iu + 1, iv)) +
               fv * ((1 - fu) * at(iu, iv + 1) + fu * at(iu + 1, iv + 1));
    };
    const double edge = 0.75 / s;
    std::vector<double> cov(std::size_t(W) * std::size_t(H));
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const double v = sample(bx0 + (x + 0.5 - ox) / s, by0 + (y + 0.5 - oy) / s);
            const double t = clamp01((v - (st.stroke - edge)) / (2 * edge));
            cov[std::size_t(y) * std::size_t(W) + std::size_t(x)] = t * t * (3 - 2 * t);
        }
    const int r = int(std::lround(st.dilate / 100.0 * dh));
    if (r > 0) {  // a marker: max filter with a disc of radius r
        std::vector<double> d(cov.size(), 0.0);
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                double m = 0;
                for (int dy = -r; dy <= r; ++dy)
                    for (int dx = -r; dx <= r; ++dx)
                        if (dx * dx + dy * dy <= r * r && y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W)
                            m = std::max(m, cov[std::size_t(y + dy) * std::size_t(W) + std::size_t(x + dx)]);
                d[std::size_t(y) * std::size_t(W) + std::size_t(x)] = m;
            }
        cov.swap(d);
    }
    for (int pass = 0; pass < int(st.blur); ++pass) {  // 3x3 box blur: an out-of-focus photo
        std::vector<double> b(cov.size());
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                double acc = 0;
                int n = 0;
                for (int dy = -1; dy <= 1; ++dy)
                    for (int dx = -1; dx <= 1; ++dx)
                        if (y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W)
                            acc += cov[std::size_t(y + dy) * std::size_t(W) + std::size_t(x + dx)], ++n;
                b[std::size_t(y) * std::size_t(W) + std::size_t(x)] = acc / n;
            }
        cov.swap(b);
    }

    Rendered out{W, H, st.channels == 1 ? 1 : st.channels, {}};
    out.px.reserve(std::size_t(W) * std::size_t(H) * std::size_t(out.channels));
    // Uneven lighting for RGB "photos": brighter at one corner, darker at the opposite one.
    const double gx = rng.uni(-0.12, 0.12), gy = rng.uni(-0.12, 0.12);
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const double c = cov[std::size_t(y) * std::size_t(W) + std::size_t(x)];
            const double light = st.channels == 3 ? 1.0 + gx * (x / double(W) - 0.5) + gy * (y / double(H) - 0.5) : 1.0;
            const double n = st.noise > 0 ? st.noise * rng.normal() : 0.0;
            std::array<double, 3> rgb;
            for (int k = 0; k < 3; ++k) rgb[size_t(k)] = ((1 - c) * st.paper[size_t(k)] + c * st.ink[size_t(k)]) * light + n;
            auto byte = [](double v) { return std::uint8_t(std::lround(std::clamp(v, 0.0, 255.0))); };
            if (st.channels == 1) {
                out.px.push_back(byte(rgb[0]));
            } else if (st.channels == 3) {
                for (int k = 0; k < 3; ++k) out.px.push_back(byte(rgb[size_t(k)]));
            } else {  // RGBA: the ink's colour everywhere, its coverage as alpha
                for (int k = 0; k < 3; ++k) out.px.push_back(byte(st.ink[size_t(k)]));
                out.px.push_back(byte(255.0 * c));
            }
        }
    return out;
}

constexpr int kOwnDigitsPerClass = 5;
constexpr int kOwnDigitsFirstIndex = 1001;  // past the first 1000 (the exported examples)

// Writes own_00.png ... and labels.csv into dir: the first kOwnDigitsPerClass test digits
// of each class from index kOwnDigitsFirstIndex on, in test-set order.
void make_own_digits(const std::string& mnist_dir, const std::string& dir) {
    using namespace kitnn;
    const data::Dataset test = data::load_idx(data::find_idx_file(mnist_dir, "t10k-images-idx3-ubyte"),
                                              data::find_idx_file(mnist_dir, "t10k-labels-idx1-ubyte"));
    std::vector<int> picked, per_class(10, 0);
    for (int i = kOwnDigitsFirstIndex; i < int(test.size()) && int(picked.size()) < 10 * kOwnDigitsPerClass; ++i)
        if (per_class[test.labels[size_t(i)]]++ < kOwnDigitsPerClass) picked.push_back(i);
    fs::create_directories(dir);
    Rng rng(20261125);
    std::string csv = "file,label\n";
    for (std::size_t k = 0; k < picked.size(); ++k) {
        const int i = picked[k];
        const Rendered r = render_own_digit(test.images.data() + std::size_t(i) * 784, kStyles[k % 10], rng);
        char name[32];
        std::snprintf(name, sizeof name, "own_%02d.png", int(k));
        io::write_png((fs::path(dir) / name).string(), r.w, r.h, r.channels, r.px);
        csv += std::string(name) + "," + std::to_string(int(test.labels[size_t(i)])) + "\n";
    }
    std::ofstream((fs::path(dir) / "labels.csv").string(), std::ios::binary) << csv;
}

const std::string kOwnDigitsDir = std::string(KITNN_TEST_DATA_DIR) + "/own_digits";

}  // namespace

// ---------------------------------------------------------------------------------------

TEST_CASE("preprocess: an off-centre dark-on-light RGB digit comes out centred, white on black, 20 px",
          "[preprocess]") {
    TempDir tmp;
    // A "7" of thick dark-blue strokes on cream paper, 200x200, drawn in the lower right.
    const int W = 200, H = 200;
    const auto cov = draw_strokes(W, H, {{{110, 95, 180, 95}}, {{180, 95, 135, 190}}}, 6);
    std::vector<std::uint8_t> rgb;
    for (float c : cov)
        for (int k : {0, 1, 2}) {
            const double paper[3] = {235, 228, 205}, ink[3] = {30, 40, 110};
            rgb.push_back(std::uint8_t(std::lround((1 - c) * paper[k] + c * ink[k])));
        }
    const std::string path = tmp / "seven.png";
    kitnn::io::write_png(path, W, H, 3, rgb);

    PreprocessReport rep;
    const GreyImage out = preprocess_digit(kitnn::io::load_grey(path), path, {}, &rep);
    REQUIRE(out.width == 28);
    REQUIRE(out.height == 28);
    CHECK(rep.inverted);
    CHECK(std::max(rep.digit_w, rep.digit_h) == 20);

    const Moments m = moments(out);
    CHECK(std::fabs(m.cy - 14.0) <= 1.0);
    CHECK(std::fabs(m.cx - 14.0) <= 1.0);
    CHECK(std::fabs(rep.com_y - m.cy) < 1e-6);
    // The longer side: 20 px. Measured on the ink (>= 0.2, the crop threshold) it may come
    // out at 19 when the outermost row is only partly covered after area averaging.
    const Moments ink = moments(out, 0.2f);
    INFO("ink box " << ink.x1 - ink.x0 + 1 << " x " << ink.y1 - ink.y0 + 1);
    CHECK(ink.y1 - ink.y0 + 1 >= 19);
    CHECK(ink.y1 - ink.y0 + 1 <= 20);
    CHECK(ink.x1 - ink.x0 + 1 < ink.y1 - ink.y0 + 1);  // this 7 is taller than wide
    // White on black: the background (most of the frame, and its corners) is 0, the
    // strokes reach full ink.
    std::vector<float> sorted = out.pixels;
    std::sort(sorted.begin(), sorted.end());
    const float peak = sorted.back();
    CHECK(sorted[sorted.size() / 2] == 0.0f);
    CHECK(out.pixels[0] == 0.0f);
    CHECK(out.pixels[27] == 0.0f);
    CHECK(out.pixels[27 * 28] == 0.0f);
    CHECK(out.pixels[27 * 28 + 27] == 0.0f);
    CHECK(peak == Approx(1.0f));
}

TEST_CASE("preprocess: light ink on dark and dark ink on a transparent canvas are both handled", "[preprocess]") {
    TempDir tmp;
    const int W = 120, H = 90;
    const auto cov = draw_strokes(W, H, {{{20, 10, 20, 60}}}, 4);  // a "1" near the left edge
    // RGBA: black ink, alpha = coverage; load_grey composites it over white -> must invert.
    std::vector<std::uint8_t> rgba, grey;
    for (float c : cov) {
        for (int k = 0; k < 3; ++k) rgba.push_back(0);
        rgba.push_back(std::uint8_t(std::lround(255 * c)));
        grey.push_back(std::uint8_t(std::lround(255 * c)));  // white on black
    }
    kitnn::io::write_png(tmp / "rgba.png", W, H, 4, rgba);
    kitnn::io::write_png(tmp / "grey.png", W, H, 1, grey);
    PreprocessReport ra, rg;
    const GreyImage a = preprocess_digit(kitnn::io::load_grey(tmp / "rgba.png"), "rgba.png", {}, &ra);
    const GreyImage g = preprocess_digit(kitnn::io::load_grey(tmp / "grey.png"), "grey.png", {}, &rg);
    CHECK(ra.inverted);
    CHECK_FALSE(rg.inverted);
    // Both describe the same digit, so they must give the same 28x28 picture.
    REQUIRE(a.pixels.size() == g.pixels.size());
    double diff = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) diff = std::max(diff, double(std::fabs(a.pixels[i] - g.pixels[i])));
    CHECK(diff < 0.02);
    // A "1" keeps its aspect ratio: 20 px tall, a few px wide, not stretched into a square.
    CHECK(rg.digit_h == 20);
    CHECK(rg.digit_w <= 6);
}

TEST_CASE("preprocess: blank and empty images are rejected with the file's name", "[preprocess]") {
    GreyImage white{64, 48, std::vector<float>(64 * 48, 1.0f)};
    CHECK_THROWS_WITH(preprocess_digit(white, "page.png"), Contains("page.png") && Contains("blank"));
    GreyImage black{28, 28, std::vector<float>(28 * 28, 0.0f)};
    CHECK_THROWS_AS(preprocess_digit(black, "black.png"), PreprocessError);
    // Paper with a faint smudge (3 grey levels) is still blank: no ink.
    GreyImage paper{50, 50, std::vector<float>(50 * 50, 0.9f)};
    paper.pixels[25 * 50 + 25] = 0.89f;
    CHECK_THROWS_WITH(preprocess_digit(paper, "paper.png"), Contains("paper.png") && Contains("blank"));
    GreyImage empty;
    CHECK_THROWS_WITH(preprocess_digit(empty, "empty.png"), Contains("empty.png") && Contains("empty image"));
    // A blank file through the loader, as mnist_apply sees it.
    TempDir tmp;
    kitnn::io::write_png(tmp / "blank.png", 30, 20, 3, std::vector<std::uint8_t>(30 * 20 * 3, 200));
    CHECK_THROWS_WITH(preprocess_digit(kitnn::io::load_grey(tmp / "blank.png"), tmp / "blank.png"),
                      Contains("blank.png") && Contains("blank image"));
}

TEST_CASE("preprocess: a digit already in MNIST form is (nearly) unchanged", "[preprocess]") {
    // Make an MNIST-form digit (by the recipe itself), then check that a second pass
    // changes nothing: the recipe is idempotent, as it must be for MNIST's own files.
    const auto cov = draw_strokes(90, 130, {{{20, 20, 70, 20}}, {{70, 20, 70, 110}}, {{20, 60, 70, 60}}}, 7);
    const GreyImage once = preprocess_digit(GreyImage{90, 130, cov}, "nine");
    const GreyImage twice = preprocess_digit(once, "nine-again");
    REQUIRE(twice.pixels.size() == once.pixels.size());
    double diff = 0;
    for (std::size_t i = 0; i < once.pixels.size(); ++i)
        diff = std::max(diff, double(std::fabs(once.pixels[i] - twice.pixels[i])));
    CHECK(diff < 1e-6);

    // A hand-made MNIST-like "1": a 20-px bar with anti-aliased sides, its centre of mass
    // at (14, 13.7) (a lighter top row), full contrast. Nothing to do: unchanged.
    GreyImage bar{28, 28, std::vector<float>(28 * 28, 0.0f)};
    for (int y = 4; y < 24; ++y)
        for (int x = 13; x < 16; ++x)
            bar.pixels[std::size_t(y) * 28 + std::size_t(x)] = (x == 14 ? 1.0f : 0.5f) * (y == 4 ? 0.5f : 1.0f);
    const GreyImage b2 = preprocess_digit(bar, "bar");
    CHECK(b2.pixels == bar.pixels);
}

TEST_CASE("preprocess: real MNIST digits are nearly unchanged", "[.][mnist]") {
    const char* dir = std::getenv("KITNN_MNIST_DIR");
    REQUIRE(dir != nullptr);
    using namespace kitnn;
    const data::Dataset test = data::load_idx(data::find_idx_file(dir, "t10k-images-idx3-ubyte"),
                                              data::find_idx_file(dir, "t10k-labels-idx1-ubyte"));
    // Compare each preprocessed digit with the original, allowing the whole-pixel shift
    // that re-centring by mass may apply (MNIST's centres are within +-0.5 px of (14,14)
    // only on average): after the best shift of at most 1 px, the pixels must agree.
    int n = 1000, close = 0, shifted_more = 0;
    for (int i = 0; i < n; ++i) {
        const float* src = test.images.data() + std::size_t(i) * 784;
        GreyImage im{28, 28, std::vector<float>(src, src + 784)};
        const GreyImage out = preprocess_digit(im, "mnist #" + std::to_string(i));
        double best = 1e30;
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
                double d = 0;
                for (int y = 0; y < 28; ++y)
                    for (int x = 0; x < 28; ++x) {
                        const int sy = y - dy, sx = x - dx;
                        const float a = (sy < 0 || sx < 0 || sy > 27 || sx > 27) ? 0.0f : src[sy * 28 + sx];
                        d += std::fabs(out.pixels[std::size_t(y) * 28 + std::size_t(x)] - a);
                    }
                best = std::min(best, d);
            }
        const Moments m = moments(out);
        if (std::fabs(m.cx - 14) > 0.5 + 1e-9 || std::fabs(m.cy - 14) > 0.5 + 1e-9) ++shifted_more;
        const Moments mi = moments(im);
        if (best < 0.02 * mi.mass) ++close;  // under 2 % of the digit's ink differs
    }
    INFO("close " << close << " of " << n << ", centre off by more than half a pixel: " << shifted_more);
    CHECK(close >= 990);
    CHECK(shifted_more <= 10);
}

TEST_CASE("resize_area averages areas and keeps constants", "[preprocess]") {
    GreyImage im{4, 2, {0, 1, 1, 1, 0, 0, 1, 0}};
    const GreyImage half = kitnn::data::resize_area(im, 2, 1);
    REQUIRE(half.pixels.size() == 2);
    CHECK(half.pixels[0] == Approx(0.25));
    CHECK(half.pixels[1] == Approx(0.75));
    GreyImage grey{7, 5, std::vector<float>(35, 0.3f)};
    for (float p : kitnn::data::resize_area(grey, 3, 11).pixels) CHECK(p == Approx(0.3f));
}

TEST_CASE("read_labels_csv: header, CRLF, blank lines, and errors naming file and line", "[preprocess]") {
    TempDir tmp;
    std::ofstream(tmp / "ok.csv", std::ios::binary) << "file,label\r\na.png,7\r\n\r\nsub/b c.png, 0\r\n";
    const auto rows = kitnn::data::read_labels_csv(tmp / "ok.csv");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].file == "a.png");
    CHECK(rows[0].label == 7);
    CHECK(rows[1].file == "sub/b c.png");
    CHECK(rows[1].label == 0);
    CHECK(rows[1].line == 4);
    std::ofstream(tmp / "bad.csv") << "file,label\na.png,7\nb.png,12\n";
    CHECK_THROWS_WITH(kitnn::data::read_labels_csv(tmp / "bad.csv"), Contains("bad.csv:3") && Contains("0-9"));
    std::ofstream(tmp / "nolabel.csv") << "file,label\na.png\n";
    CHECK_THROWS_WITH(kitnn::data::read_labels_csv(tmp / "nolabel.csv"), Contains("nolabel.csv:2"));
    std::ofstream(tmp / "empty.csv") << "file,label\n";
    CHECK_THROWS_WITH(kitnn::data::read_labels_csv(tmp / "empty.csv"), Contains("no labelled files"));
    CHECK_THROWS_WITH(kitnn::data::read_labels_csv(tmp / "missing.csv"), Contains("missing.csv"));
}

TEST_CASE("own_digits: the committed set is complete, small, and every image holds a digit", "[preprocess]") {
    const auto rows = kitnn::data::read_labels_csv(kOwnDigitsDir + "/labels.csv");
    CHECK(rows.size() == 10 * kOwnDigitsPerClass);
    std::vector<int> per_class(10, 0);
    std::uintmax_t bytes = 0;
    for (const auto& r : rows) {
        const std::string path = kOwnDigitsDir + "/" + r.file;
        INFO(path);
        REQUIRE(fs::is_regular_file(path));
        bytes += fs::file_size(path);
        ++per_class[size_t(r.label)];
        PreprocessReport rep;
        const GreyImage g = kitnn::io::load_grey(path);
        CHECK(std::max(g.width, g.height) >= 100);  // really not MNIST-sized
        const GreyImage out = preprocess_digit(g, path, {}, &rep);
        const Moments m = moments(out);
        CHECK(std::fabs(m.cy - 14) <= 1.0);
        CHECK(std::fabs(m.cx - 14) <= 1.0);
    }
    for (int c = 0; c < 10; ++c) CHECK(per_class[size_t(c)] == kOwnDigitsPerClass);
    CHECK(bytes < 1000000);
}

TEST_CASE("own_digits: the committed set is what the generator makes from MNIST", "[.][mnist]") {
    const char* dir = std::getenv("KITNN_MNIST_DIR");
    REQUIRE(dir != nullptr);
    TempDir tmp;
    make_own_digits(dir, tmp.path.string());
    const auto rows = kitnn::data::read_labels_csv(kOwnDigitsDir + "/labels.csv");
    const auto made = kitnn::data::read_labels_csv(tmp / "labels.csv");
    REQUIRE(rows.size() == made.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        INFO(rows[i].file);
        CHECK(rows[i].file == made[i].file);
        CHECK(rows[i].label == made[i].label);
        // Compare decoded pixels, not PNG bytes (compression may differ between stb versions).
        const GreyImage a = kitnn::io::load_grey(kOwnDigitsDir + "/" + rows[i].file);
        const GreyImage b = kitnn::io::load_grey(tmp / made[i].file);
        CHECK(a.width == b.width);
        CHECK(a.height == b.height);
        CHECK(a.pixels == b.pixels);
    }
}

// Not a test: regenerates tests/data/own_digits (see the top of this file).
TEST_CASE("make_own_digits", "[.][make_own_digits][tool]") {
    const char* dir = std::getenv("KITNN_MNIST_DIR");
    const char* out = std::getenv("KITNN_OWN_DIGITS_OUT");
    REQUIRE(dir != nullptr);
    REQUIRE(out != nullptr);
    make_own_digits(dir, out);
    std::uintmax_t bytes = 0;
    for (const auto& e : fs::directory_iterator(out)) bytes += e.file_size();
    WARN("wrote " << 10 * kOwnDigitsPerClass << " images + labels.csv to " << out << ", " << bytes << " bytes");
}

// ---------------------------------------------------------------------------------------
// Pictures for docs/own-digits.md (not a test):
//   export KITNN_DOCS_IMAGES_OUT=docs/images; build/tests/kitnn_tests "[make_docs_images]"
namespace {

struct Sheet {  // an RGB canvas
    int w, h;
    std::vector<std::uint8_t> px;
    Sheet(int w_, int h_, std::uint8_t fill) : w(w_), h(h_), px(std::size_t(w_) * std::size_t(h_) * 3, fill) {}
    void set(int x, int y, int r, int g, int b) {
        if (x < 0 || y < 0 || x >= w || y >= h) return;
        std::uint8_t* p = &px[(std::size_t(y) * std::size_t(w) + std::size_t(x)) * 3];
        p[0] = std::uint8_t(r), p[1] = std::uint8_t(g), p[2] = std::uint8_t(b);
    }
    // A grey [0,1] image scaled by an integer factor (nearest: the pixels stay visible).
    void grey(const GreyImage& im, int ox, int oy, int zoom) {
        for (int y = 0; y < im.height * zoom; ++y)
            for (int x = 0; x < im.width * zoom; ++x) {
                const int v = int(std::lround(255 * im.pixels[std::size_t(y / zoom) * std::size_t(im.width) +
                                                              std::size_t(x / zoom)]));
                set(ox + x, oy + y, v, v, v);
            }
    }
    // An image file as it looks (RGBA over a grey checkerboard), fitted into a side x side cell.
    void file(const std::string& path, int ox, int oy, int side) {
        int fw = 0, fh = 0, c = 0;
        std::uint8_t* d = stbi_load(path.c_str(), &fw, &fh, &c, 4);
        REQUIRE(d != nullptr);
        const double s = double(side) / std::max(fw, fh);
        const int dw = int(fw * s), dh = int(fh * s), x0 = ox + (side - dw) / 2, y0 = oy + (side - dh) / 2;
        for (int y = 0; y < dh; ++y)
            for (int x = 0; x < dw; ++x) {
                const std::uint8_t* p = d + (std::size_t(std::min(fh - 1, int(y / s))) * std::size_t(fw) +
                                             std::size_t(std::min(fw - 1, int(x / s)))) * 4;
                const double a = p[3] / 255.0, check = ((x / 8 + y / 8) % 2) ? 200 : 160;
                set(x0 + x, y0 + y, int(a * p[0] + (1 - a) * check), int(a * p[1] + (1 - a) * check),
                    int(a * p[2] + (1 - a) * check));
            }
        stbi_image_free(d);
    }
    void frame(int ox, int oy, int side, int r, int g, int b) {
        for (int i = -1; i <= side; ++i) set(ox + i, oy - 1, r, g, b), set(ox + i, oy + side, r, g, b),
                                         set(ox - 1, oy + i, r, g, b), set(ox + side, oy + i, r, g, b);
    }
};

}  // namespace

TEST_CASE("make_docs_images", "[.][make_docs_images][tool]") {
    const char* out = std::getenv("KITNN_DOCS_IMAGES_OUT");
    REQUIRE(out != nullptr);
    const auto rows = kitnn::data::read_labels_csv(kOwnDigitsDir + "/labels.csv");
    // 1. own_digits_before_after.png: 3 rows x 10 columns (the ten drawing styles):
    //    the file as drawn | what --raw --resize feeds the network | what preprocessing feeds it.
    const int cell = 84, gap = 8, n = 10;
    Sheet s(n * (cell + gap) + gap, 3 * (cell + gap) + gap, 255);
    for (int k = 0; k < n; ++k) {
        const std::string path = kOwnDigitsDir + "/" + rows[size_t(k)].file;
        const int x = gap + k * (cell + gap);
        s.file(path, x, gap, cell);
        s.frame(x, gap, cell, 120, 120, 120);
        const GreyImage g = kitnn::io::load_grey(path);
        s.grey(kitnn::data::resize_area(g, 28, 28), x, gap + (cell + gap), 3);
        s.grey(preprocess_digit(g, path), x, gap + 2 * (cell + gap), 3);
    }
    kitnn::io::write_png((fs::path(out) / "own_digits_before_after.png").string(), s.w, s.h, 3, s.px);

    // 2. preprocess_steps.png: one digit through the steps, each shown at the same height.
    const std::string path = kOwnDigitsDir + "/" + rows[2].file;
    const GreyImage g = kitnn::io::load_grey(path);
    PreprocessReport rep;
    const GreyImage final28 = preprocess_digit(g, path, {}, &rep);
    // Re-do steps 1-2 for the picture: grey, inverted, stretched.
    GreyImage inv = g;
    for (float& p : inv.pixels) p = rep.inverted ? 1.0f - p : p;
    GreyImage stretched = inv;
    for (float& p : stretched.pixels) p = std::clamp((p - rep.background) / (rep.ink - rep.background), 0.0f, 1.0f);
    GreyImage crop{rep.crop_w, rep.crop_h, {}};
    for (int y = 0; y < rep.crop_h; ++y)
        for (int x = 0; x < rep.crop_w; ++x)
            crop.pixels.push_back(stretched.pixels[std::size_t(rep.crop_y + y) * std::size_t(g.width) +
                                                   std::size_t(rep.crop_x + x)]);
    const GreyImage scaled = kitnn::data::resize_area(crop, rep.digit_w, rep.digit_h);
    const int big = 168;
    auto fit = [&](const GreyImage& im) {  // area-resize into big x big keeping the aspect ratio
        const double f = double(big) / std::max(im.width, im.height);
        return kitnn::data::resize_area(im, std::max(1, int(im.width * f)), std::max(1, int(im.height * f)));
    };
    Sheet t(6 * (big + gap) + gap, big + 2 * gap, 255);
    int x = gap;
    t.file(path, x, gap, big);
    x += big + gap;
    for (const GreyImage& im : {fit(g), fit(stretched), fit(crop)}) {
        t.grey(im, x + (big - im.width) / 2, gap + (big - im.height) / 2, 1);
        x += big + gap;
    }
    t.grey(scaled, x + (big - scaled.width * 6) / 2, gap + (big - scaled.height * 6) / 2, 6);
    x += big + gap;
    t.grey(final28, x, gap, 6);
    for (int k = 0; k < 6; ++k) t.frame(gap + k * (big + gap), gap, big, 120, 120, 120);
    // the frame's centre (14,14) in pixel-index coordinates: a red cross on the last panel
    for (int i = -4; i <= 4; ++i) t.set(x + 14 * 6 + 3 + i, gap + 14 * 6 + 3, 255, 0, 0), t.set(x + 14 * 6 + 3, gap + 14 * 6 + 3 + i, 255, 0, 0);
    kitnn::io::write_png((fs::path(out) / "preprocess_steps.png").string(), t.w, t.h, 3, t.px);
}
