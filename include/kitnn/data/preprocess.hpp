// kitnn/data/preprocess.hpp — turn a photo or drawing of one digit into an MNIST-style
// 28x28 input, the way MNIST itself was made; and read "file,label" CSV files.
//
// A network trained on MNIST has only ever seen digits that are
//   * white (1.0) on a black (0.0) background,
//   * full contrast: the stroke centres are at or near 1.0,
//   * size-normalised: the digit was scaled, keeping its aspect ratio, so that its longer
//     side is 20 pixels (anti-aliased, hence the grey edges),
//   * centred by mass: that 20x20 box sits in a 28x28 frame so that the digit's centre of
//     mass is at pixel (14,14).
// It has learned nothing about any other placement, size or polarity: a convolutional
// network is only partly shift-invariant (its dense layers see absolute positions), so a
// digit drawn in a corner, filling the whole frame, or dark on light paper lands outside
// everything it knows and is classified almost at random. preprocess_digit() repeats
// MNIST's recipe on an arbitrary image, so such a digit looks like MNIST again:
//
//   1. background detection: the median of the border pixels; a light one is inverted,
//   2. contrast normalisation: background -> 0, ink -> 1,
//   3. crop to the digit's bounding box,
//   4. scale the longer side to 20 px, keeping the aspect ratio (area averaging),
//   5. paste into a 28x28 frame so the centre of mass lands at (14,14).
//
// An MNIST digit passes through almost unchanged (it already is all of the above), so
// the same model can be applied to MNIST files and to users' drawings alike.
#pragma once

#include "kitnn/io/image.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::data {

struct PreprocessError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Polarity {
    detect,        // decide from the border (the default)
    light_on_dark, // already like MNIST: never invert
    dark_on_light, // ink on paper: always invert
};

struct PreprocessOptions {
    int frame = 28;  // side of the output image (MNIST: 28)
    int box = 20;    // the digit's longer side inside the frame (MNIST: 20)
    Polarity polarity = Polarity::detect;
    // Fraction of the ink pixels allowed to saturate when stretching the contrast: one
    // hot pixel or a speck of glare must not decide what "full ink" is.
    double clip = 0.01;
    // A pixel belongs to the digit's bounding box when it is at least this fraction of
    // full ink. Low enough to keep anti-aliased stroke ends, high enough to ignore the
    // faint halo of a blurred photo (MNIST digits keep their 20-px box for any value up to ~0.2).
    double crop_threshold = 0.2;
    // Ink must differ from the background by at least this much (on the 0..1 scale),
    // else the image is taken to be blank.
    double min_contrast = 0.08;
};

// What preprocess_digit() found and did, for --verbose output, tests and debugging.
struct PreprocessReport {
    bool inverted = false;          // the background was light, the image was inverted
    float background = 0, ink = 0;  // the levels mapped to 0 and 1 (after any inversion)
    int crop_x = 0, crop_y = 0, crop_w = 0, crop_h = 0;  // the bounding box in the input
    int digit_w = 0, digit_h = 0;   // its size after scaling (longer side == box)
    double com_x = 0, com_y = 0;    // centre of mass in the output frame (index coordinates)
};

namespace detail {

inline float quantile(std::vector<float> v, double q) {
    if (v.empty()) return 0.0f;
    const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size() - 1) + 0.5));
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
    return v[k];
}

inline std::vector<float> border_pixels(const io::GreyImage& im) {
    std::vector<float> b;
    const int w = im.width, h = im.height;
    auto at = [&](int y, int x) { return im.pixels[std::size_t(y) * std::size_t(w) + std::size_t(x)]; };
    for (int x = 0; x < w; ++x) {
        b.push_back(at(0, x));
        if (h > 1) b.push_back(at(h - 1, x));
    }
    for (int y = 1; y + 1 < h; ++y) {
        b.push_back(at(y, 0));
        if (w > 1) b.push_back(at(y, w - 1));
    }
    return b;
}

}  // namespace detail

namespace detail {
// Area averaging of the region [fx0, fx0+fw) x [fy0, fy0+fh) of `im` (fractional bounds
// allowed) onto ow x oh pixels. Parts of the region outside the image count as 0.
inline io::GreyImage resample_area(const io::GreyImage& im, double fx0, double fy0, double fw, double fh,
                                   int ow, int oh) {
    io::GreyImage out;
    out.width = ow;
    out.height = oh;
    out.pixels.assign(std::size_t(ow) * std::size_t(oh), 0.0f);
    const double sy = fh / oh, sx = fw / ow;
    for (int y = 0; y < oh; ++y) {
        const double a0 = fy0 + y * sy, a1 = a0 + sy;
        const int iy0 = std::max(0, int(std::floor(a0))), iy1 = std::min(im.height, int(std::ceil(a1)));
        for (int x = 0; x < ow; ++x) {
            const double b0 = fx0 + x * sx, b1 = b0 + sx;
            const int ix0 = std::max(0, int(std::floor(b0))), ix1 = std::min(im.width, int(std::ceil(b1)));
            double acc = 0;
            for (int iy = iy0; iy < iy1; ++iy) {
                const double wy = std::min(a1, iy + 1.0) - std::max(a0, double(iy));
                if (wy <= 0) continue;
                for (int ix = ix0; ix < ix1; ++ix) {
                    const double wx = std::min(b1, ix + 1.0) - std::max(b0, double(ix));
                    if (wx > 0) acc += wy * wx * im.pixels[std::size_t(iy) * std::size_t(im.width) + std::size_t(ix)];
                }
            }
            out.pixels[std::size_t(y) * std::size_t(ow) + std::size_t(x)] = float(acc / (sx * sy));
        }
    }
    return out;
}
}  // namespace detail

// Area-averaging resampling of the region (x0, y0, w, h) of `im` to ow x oh pixels: every
// output pixel is the mean of the input area it covers (fractional pixels weighted by the
// covered fraction). Shrinking a 300-px drawing this way keeps thin strokes as grey
// instead of dropping them between samples (what nearest-neighbour or a 2x2 bilinear
// filter would do), which is also how MNIST's anti-aliased grey edges came about.
inline io::GreyImage resize_area(const io::GreyImage& im, int x0, int y0, int w, int h, int ow, int oh) {
    if (w <= 0 || h <= 0 || ow <= 0 || oh <= 0 || x0 < 0 || y0 < 0 || x0 + w > im.width ||
        y0 + h > im.height)
        throw PreprocessError("resize_area: bad region or size");
    return detail::resample_area(im, x0, y0, w, h, ow, oh);
}

// The whole image scaled to ow x oh (what mnist_apply --raw --resize does).
inline io::GreyImage resize_area(const io::GreyImage& im, int ow, int oh) {
    return resize_area(im, 0, 0, im.width, im.height, ow, oh);
}

// MNIST's recipe on one image (see the top of this file). `name` (usually the file path)
// starts every error message. Throws PreprocessError for an empty or blank image.
inline io::GreyImage preprocess_digit(const io::GreyImage& in, const std::string& name,
                                      const PreprocessOptions& opt = {}, PreprocessReport* report = nullptr) {
    const int W = in.width, H = in.height;
    if (W <= 0 || H <= 0 || in.pixels.size() != std::size_t(W) * std::size_t(H))
        throw PreprocessError(name + ": empty image (" + std::to_string(W) + "x" + std::to_string(H) + ")");
    if (opt.box < 1 || opt.box > opt.frame)
        throw PreprocessError(name + ": preprocessing box " + std::to_string(opt.box) +
                              " does not fit the frame " + std::to_string(opt.frame));
    PreprocessReport rep;

    // 1. Background. The border of a picture of one digit is almost all background, so
    //    its median is the paper's (or the screen's) level even when a stroke touches an
    //    edge. MNIST is white ink on black: a light background means dark ink, invert it.
    std::vector<float> border = detail::border_pixels(in);
    const float border_median = detail::quantile(border, 0.5);
    rep.inverted = opt.polarity == Polarity::dark_on_light ||
                   (opt.polarity == Polarity::detect && border_median > 0.5f);
    std::vector<float> v = in.pixels;
    if (rep.inverted) {
        for (float& p : v) p = 1.0f - p;
        for (float& p : border) p = 1.0f - p;
    }

    // 2. Contrast. Paper photographed is grey, not white, and pencil is grey, not black;
    //    MNIST has an exact 0 background and strokes near 1. The background level is the
    //    border median plus 3 robust standard deviations of the border (1.4826 x the
    //    median absolute deviation), so sensor noise and paper texture fall to 0 too. The
    //    ink level is a high quantile of the pixels above it (not the maximum: a few hot
    //    pixels must not set the scale). For a clean MNIST digit this is 0 and 1: no change.
    const float bg_median = detail::quantile(border, 0.5);
    std::vector<float> dev(border.size());
    for (std::size_t i = 0; i < border.size(); ++i) dev[i] = std::fabs(border[i] - bg_median);
    const float lo = std::min(1.0f, bg_median + 3.0f * 1.4826f * detail::quantile(dev, 0.5));
    std::vector<float> ink_pixels;
    for (float p : v)
        if (p > lo) ink_pixels.push_back(p);
    const float hi = detail::quantile(ink_pixels, 1.0 - opt.clip);
    if (ink_pixels.empty() || hi - lo < float(opt.min_contrast)) {
        char level[64];
        std::snprintf(level, sizeof level, "%.3f", double(rep.inverted ? 1.0f - bg_median : bg_median));
        throw PreprocessError(name + ": blank image: no digit found (nothing differs from the background level " +
                              level + " by " + std::to_string(std::lround(opt.min_contrast * 100)) + " % or more)");
    }
    rep.background = lo;
    rep.ink = hi;
    for (float& p : v) p = std::clamp((p - lo) / (hi - lo), 0.0f, 1.0f);

    // 3. Bounding box of the ink. Everything outside is margin, which is exactly what
    //    differs between drawings (a digit in a corner, a small digit on a big page) and
    //    what MNIST's normalisation removed.
    int x0 = W, x1 = -1, y0 = H, y1 = -1;
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
            if (v[std::size_t(y) * std::size_t(W) + std::size_t(x)] >= float(opt.crop_threshold)) {
                x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
            }
    if (x1 < 0) throw PreprocessError(name + ": blank image: no digit found after contrast normalisation");
    rep.crop_x = x0, rep.crop_y = y0, rep.crop_w = x1 - x0 + 1, rep.crop_h = y1 - y0 + 1;

    // 4. Size normalisation: the longer side of the box becomes `box` (20) pixels and the
    //    aspect ratio is kept, so a "1" stays a thin bar instead of being stretched into a
    //    blob. Area averaging anti-aliases, as MNIST's own downscaling did. The resampled
    //    region reaches `pad` output pixels beyond the box, so the faint anti-aliased edge
    //    below the crop threshold is kept, not cut off. For an MNIST digit the scale is
    //    exactly 1 and its pixels are copied unchanged.
    const int pad = 2;
    const double scale = double(opt.box) / double(std::max(rep.crop_w, rep.crop_h));
    rep.digit_w = std::clamp(int(std::lround(rep.crop_w * scale)), 1, opt.box);
    rep.digit_h = std::clamp(int(std::lround(rep.crop_h * scale)), 1, opt.box);
    const double sx = double(rep.crop_w) / rep.digit_w, sy = double(rep.crop_h) / rep.digit_h;  // input px per output px
    const io::GreyImage stretched{W, H, std::move(v)};
    io::GreyImage digit = detail::resample_area(stretched, x0 - pad * sx, y0 - pad * sy, (rep.digit_w + 2 * pad) * sx,
                                                (rep.digit_h + 2 * pad) * sy, rep.digit_w + 2 * pad,
                                                rep.digit_h + 2 * pad);
    // Shrinking a drawing with thin strokes a lot leaves them grey; MNIST strokes peak at 1.
    const float peak = *std::max_element(digit.pixels.begin(), digit.pixels.end());
    if (peak <= 0.0f) throw PreprocessError(name + ": blank image: the digit vanished when scaled");
    for (float& p : digit.pixels) p = std::min(1.0f, p / peak);

    // 5. Centring by centre of mass, not by the box: MNIST placed the 20x20 box so that
    //    the mass centre lands on pixel (14,14) of the 28x28 frame (pixel-index
    //    coordinates; MNIST's own centres average 13.99, 14.01). The shift is a whole
    //    number of pixels (a sub-pixel shift would blur), and is limited so that the box
    //    stays inside the frame (only matters for very lopsided digits).
    double m = 0, my = 0, mx = 0;
    for (int y = 0; y < digit.height; ++y)
        for (int x = 0; x < digit.width; ++x) {
            const double p = digit.pixels[std::size_t(y) * std::size_t(digit.width) + std::size_t(x)];
            m += p, my += p * y, mx += p * x;
        }
    const double centre = opt.frame / 2.0;  // 14 for MNIST
    // (oy, ox): where the padded digit's top-left pixel goes; its box starts `pad` further.
    const int oy = std::clamp(int(std::lround(centre - my / m)), -pad, opt.frame - rep.digit_h - pad);
    const int ox = std::clamp(int(std::lround(centre - mx / m)), -pad, opt.frame - rep.digit_w - pad);

    io::GreyImage out;
    out.width = out.height = opt.frame;
    out.pixels.assign(std::size_t(opt.frame) * std::size_t(opt.frame), 0.0f);
    double om = 0, omy = 0, omx = 0;
    for (int y = 0; y < digit.height; ++y)
        for (int x = 0; x < digit.width; ++x) {
            const int fy = oy + y, fx = ox + x;
            if (fy < 0 || fx < 0 || fy >= opt.frame || fx >= opt.frame) continue;  // only faint edge pixels
            const float p = digit.pixels[std::size_t(y) * std::size_t(digit.width) + std::size_t(x)];
            out.pixels[std::size_t(fy) * std::size_t(opt.frame) + std::size_t(fx)] = p;
            om += p, omy += double(p) * fy, omx += double(p) * fx;
        }
    rep.com_y = omy / om;
    rep.com_x = omx / om;
    if (report) *report = rep;
    return out;
}

// One row of a labels CSV.
struct LabelledFile {
    std::string file;
    int label = 0;
    int line = 0;  // 1-based line in the CSV, for messages
};

// Reads a CSV "file,label" with a header line (the first line is always skipped; this
// is what mnist_export writes as example_labels.csv). Labels must be 0-9. Blank lines
// are ignored, Windows line ends accepted. Anything else throws PreprocessError naming
// the file and the line. A file name may contain commas (the label is after the last one).
inline std::vector<LabelledFile> read_labels_csv(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw PreprocessError(path + ": cannot open labels file");
    std::vector<LabelledFile> rows;
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (n == 1) continue;  // header
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const auto comma = line.rfind(',');
        auto bad = [&](const std::string& why) {
            return PreprocessError(path + ":" + std::to_string(n) + ": " + why + ": \"" + line +
                                   "\" (expected file,label with a digit 0-9)");
        };
        if (comma == std::string::npos || comma == 0) throw bad("no file,label pair");
        std::string file = line.substr(0, comma), lab = line.substr(comma + 1);
        auto trim = [](std::string s) {
            const auto a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
            return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
        };
        file = trim(file), lab = trim(lab);
        if (file.empty()) throw bad("empty file name");
        if (lab.size() != 1 || lab[0] < '0' || lab[0] > '9') throw bad("label is not a digit 0-9");
        rows.push_back({file, lab[0] - '0', n});
    }
    if (rows.empty()) throw PreprocessError(path + ": no labelled files (a header line, then file,label lines)");
    return rows;
}

}  // namespace kitnn::data
