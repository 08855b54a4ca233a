// kitnn/viz/plot.hpp — all the drawing code behind the training report: an RGB canvas,
// lines, rectangles, text in a built-in 5x7 bitmap font, line charts with axes, ticks and
// a legend, colour scales with a colour bar, and greyscale images pasted into a grid.
// No plotting library and no Python: pixels in a std::vector, written by io::write_png.
//
// Coordinates are pixels, x to the right and y DOWN, (0,0) the top-left corner. Drawing
// outside the canvas is clipped silently, so callers never have to range-check.
//
// The font: every printable ASCII character (32..126) is a 5x8 bitmap, 7 rows above the
// baseline and 1 row for descenders (g, j, p, q, y), one byte per row, bit 4 = leftmost
// column. A character advances 6 pixels (one blank column); text is scaled by whole
// numbers (scale 2 = 10x16 glyphs), which keeps the pixels crisp. The glyphs were drawn
// for kitnn; any other character is drawn as a hollow box.
//
// Charts map data (x, y) to pixels linearly: px = left + (x - x0) / (x1 - x0) * width,
// and y the same way upside down. Axis limits are widened to "nice" tick steps (1, 2 or
// 5 times a power of ten), so tick labels are short round numbers.
#pragma once

#include "kitnn/io/image.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::viz {

struct Rgb {
    std::uint8_t r = 0, g = 0, b = 0;
    bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
    bool operator!=(const Rgb& o) const { return !(*this == o); }
};

constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrey{120, 120, 120}, kLightGrey{225, 225, 225};
// Series colours (distinguishable with the common colour-vision deficiencies).
constexpr Rgb kBlue{31, 119, 180}, kOrange{230, 120, 10}, kRed{200, 30, 30}, kGreen{30, 130, 60};

namespace detail {
// Rows of the glyphs for ' ' .. '~' (see the top of the file).
inline const std::array<std::array<std::uint8_t, 8>, 95>& font5x7() {
    static const std::array<std::array<std::uint8_t, 8>, 95> glyphs = {{
    {0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00}, {0x04,0x04,0x04,0x04,0x04,0x00,0x04,0x00}, {0x0A,0x0A,0x00,0x00,0x00,0x00,0x00,0x00}, {0x0A,0x0A,0x1F,0x0A,0x1F,0x0A,0x0A,0x00},  // sp ! " #
    {0x04,0x0F,0x14,0x0E,0x05,0x1E,0x04,0x00}, {0x18,0x19,0x02,0x04,0x08,0x13,0x03,0x00}, {0x0C,0x12,0x14,0x08,0x15,0x12,0x0D,0x00}, {0x04,0x04,0x00,0x00,0x00,0x00,0x00,0x00},  // $ % & '
    {0x02,0x04,0x08,0x08,0x08,0x04,0x02,0x00}, {0x08,0x04,0x02,0x02,0x02,0x04,0x08,0x00}, {0x00,0x04,0x15,0x0E,0x15,0x04,0x00,0x00}, {0x00,0x04,0x04,0x1F,0x04,0x04,0x00,0x00},  // ( ) * +
    {0x00,0x00,0x00,0x00,0x00,0x0C,0x04,0x08}, {0x00,0x00,0x00,0x1F,0x00,0x00,0x00,0x00}, {0x00,0x00,0x00,0x00,0x00,0x0C,0x0C,0x00}, {0x01,0x01,0x02,0x04,0x08,0x10,0x10,0x00},  // , - . /
    {0x0E,0x11,0x13,0x15,0x19,0x11,0x0E,0x00}, {0x04,0x0C,0x04,0x04,0x04,0x04,0x0E,0x00}, {0x0E,0x11,0x01,0x02,0x04,0x08,0x1F,0x00}, {0x1F,0x02,0x04,0x02,0x01,0x11,0x0E,0x00},  // 0 1 2 3
    {0x02,0x06,0x0A,0x12,0x1F,0x02,0x02,0x00}, {0x1F,0x10,0x1E,0x01,0x01,0x11,0x0E,0x00}, {0x06,0x08,0x10,0x1E,0x11,0x11,0x0E,0x00}, {0x1F,0x01,0x02,0x04,0x08,0x08,0x08,0x00},  // 4 5 6 7
    {0x0E,0x11,0x11,0x0E,0x11,0x11,0x0E,0x00}, {0x0E,0x11,0x11,0x0F,0x01,0x02,0x0C,0x00}, {0x00,0x0C,0x0C,0x00,0x0C,0x0C,0x00,0x00}, {0x00,0x0C,0x0C,0x00,0x0C,0x04,0x08,0x00},  // 8 9 : ;
    {0x02,0x04,0x08,0x10,0x08,0x04,0x02,0x00}, {0x00,0x00,0x1F,0x00,0x1F,0x00,0x00,0x00}, {0x08,0x04,0x02,0x01,0x02,0x04,0x08,0x00}, {0x0E,0x11,0x01,0x02,0x04,0x00,0x04,0x00},  // < = > ?
    {0x0E,0x11,0x17,0x15,0x17,0x10,0x0E,0x00}, {0x0E,0x11,0x11,0x1F,0x11,0x11,0x11,0x00}, {0x1E,0x11,0x11,0x1E,0x11,0x11,0x1E,0x00}, {0x0E,0x11,0x10,0x10,0x10,0x11,0x0E,0x00},  // @ A B C
    {0x1C,0x12,0x11,0x11,0x11,0x12,0x1C,0x00}, {0x1F,0x10,0x10,0x1E,0x10,0x10,0x1F,0x00}, {0x1F,0x10,0x10,0x1E,0x10,0x10,0x10,0x00}, {0x0E,0x11,0x10,0x17,0x11,0x11,0x0F,0x00},  // D E F G
    {0x11,0x11,0x11,0x1F,0x11,0x11,0x11,0x00}, {0x0E,0x04,0x04,0x04,0x04,0x04,0x0E,0x00}, {0x07,0x02,0x02,0x02,0x02,0x12,0x0C,0x00}, {0x11,0x12,0x14,0x18,0x14,0x12,0x11,0x00},  // H I J K
    {0x10,0x10,0x10,0x10,0x10,0x10,0x1F,0x00}, {0x11,0x1B,0x15,0x15,0x11,0x11,0x11,0x00}, {0x11,0x11,0x19,0x15,0x13,0x11,0x11,0x00}, {0x0E,0x11,0x11,0x11,0x11,0x11,0x0E,0x00},  // L M N O
    {0x1E,0x11,0x11,0x1E,0x10,0x10,0x10,0x00}, {0x0E,0x11,0x11,0x11,0x15,0x12,0x0D,0x00}, {0x1E,0x11,0x11,0x1E,0x14,0x12,0x11,0x00}, {0x0F,0x10,0x10,0x0E,0x01,0x01,0x1E,0x00},  // P Q R S
    {0x1F,0x04,0x04,0x04,0x04,0x04,0x04,0x00}, {0x11,0x11,0x11,0x11,0x11,0x11,0x0E,0x00}, {0x11,0x11,0x11,0x11,0x11,0x0A,0x04,0x00}, {0x11,0x11,0x11,0x15,0x15,0x15,0x0A,0x00},  // T U V W
    {0x11,0x11,0x0A,0x04,0x0A,0x11,0x11,0x00}, {0x11,0x11,0x0A,0x04,0x04,0x04,0x04,0x00}, {0x1F,0x01,0x02,0x04,0x08,0x10,0x1F,0x00}, {0x0E,0x08,0x08,0x08,0x08,0x08,0x0E,0x00},  // X Y Z [
    {0x10,0x10,0x08,0x04,0x02,0x01,0x01,0x00}, {0x0E,0x02,0x02,0x02,0x02,0x02,0x0E,0x00}, {0x04,0x0A,0x11,0x00,0x00,0x00,0x00,0x00}, {0x00,0x00,0x00,0x00,0x00,0x00,0x1F,0x00},  // \\ ] ^ _
    {0x08,0x04,0x00,0x00,0x00,0x00,0x00,0x00}, {0x00,0x00,0x0E,0x01,0x0F,0x11,0x0F,0x00}, {0x10,0x10,0x1E,0x11,0x11,0x11,0x1E,0x00}, {0x00,0x00,0x0E,0x10,0x10,0x11,0x0E,0x00},  // ` a b c
    {0x01,0x01,0x0F,0x11,0x11,0x11,0x0F,0x00}, {0x00,0x00,0x0E,0x11,0x1F,0x10,0x0E,0x00}, {0x06,0x09,0x08,0x1C,0x08,0x08,0x08,0x00}, {0x00,0x00,0x0F,0x11,0x11,0x0F,0x01,0x0E},  // d e f g
    {0x10,0x10,0x16,0x19,0x11,0x11,0x11,0x00}, {0x04,0x00,0x0C,0x04,0x04,0x04,0x0E,0x00}, {0x02,0x00,0x06,0x02,0x02,0x02,0x12,0x0C}, {0x10,0x10,0x12,0x14,0x18,0x14,0x12,0x00},  // h i j k
    {0x0C,0x04,0x04,0x04,0x04,0x04,0x0E,0x00}, {0x00,0x00,0x1A,0x15,0x15,0x15,0x15,0x00}, {0x00,0x00,0x16,0x19,0x11,0x11,0x11,0x00}, {0x00,0x00,0x0E,0x11,0x11,0x11,0x0E,0x00},  // l m n o
    {0x00,0x00,0x1E,0x11,0x11,0x1E,0x10,0x10}, {0x00,0x00,0x0F,0x11,0x11,0x0F,0x01,0x01}, {0x00,0x00,0x16,0x19,0x10,0x10,0x10,0x00}, {0x00,0x00,0x0F,0x10,0x0E,0x01,0x1E,0x00},  // p q r s
    {0x08,0x08,0x1C,0x08,0x08,0x09,0x06,0x00}, {0x00,0x00,0x11,0x11,0x11,0x13,0x0D,0x00}, {0x00,0x00,0x11,0x11,0x11,0x0A,0x04,0x00}, {0x00,0x00,0x11,0x11,0x15,0x15,0x0A,0x00},  // t u v w
    {0x00,0x00,0x11,0x0A,0x04,0x0A,0x11,0x00}, {0x00,0x00,0x11,0x11,0x11,0x0F,0x01,0x0E}, {0x00,0x00,0x1F,0x02,0x04,0x08,0x1F,0x00}, {0x02,0x04,0x04,0x08,0x04,0x04,0x02,0x00},  // x y z {
    {0x04,0x04,0x04,0x04,0x04,0x04,0x04,0x00}, {0x08,0x04,0x04,0x02,0x04,0x04,0x08,0x00}, {0x00,0x00,0x08,0x15,0x02,0x00,0x00,0x00},  // | } ~
    }};
    return glyphs;
}
}  // namespace detail

constexpr int kGlyphW = 5, kGlyphH = 8, kAdvance = 6;  // font cell and advance, unscaled

// Width and height in pixels of `s` drawn at `scale` (no trailing blank column).
inline int text_width(const std::string& s, int scale = 1) {
    return s.empty() ? 0 : (int(s.size()) * kAdvance - 1) * scale;
}
inline int text_height(int scale = 1) { return kGlyphH * scale; }

// An RGB image, 3 bytes per pixel, row-major: px[(y * w + x) * 3 + channel].
class Canvas {
public:
    Canvas(int w, int h, Rgb bg = kWhite) : w_(w), h_(h) {
        if (w < 1 || h < 1 || w > 16384 || h > 16384)
            throw std::invalid_argument("Canvas: size " + std::to_string(w) + "x" + std::to_string(h) +
                                        " is not within 1..16384");
        px_.resize(std::size_t(w) * std::size_t(h) * 3);
        fill_rect(0, 0, w, h, bg);
    }
    int width() const { return w_; }
    int height() const { return h_; }
    const std::vector<std::uint8_t>& pixels() const { return px_; }

    Rgb get(int x, int y) const {
        if (x < 0 || y < 0 || x >= w_ || y >= h_) return kWhite;
        const std::uint8_t* p = &px_[(std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3];
        return {p[0], p[1], p[2]};
    }
    void set(int x, int y, Rgb c) {
        if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
        std::uint8_t* p = &px_[(std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3];
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
    void fill_rect(int x, int y, int w, int h, Rgb c) {
        for (int j = std::max(0, y); j < std::min(h_, y + h); ++j)
            for (int i = std::max(0, x); i < std::min(w_, x + w); ++i) set(i, j, c);
    }
    // Outline of the rectangle [x, x+w) x [y, y+h), `t` pixels thick, inside it.
    void rect(int x, int y, int w, int h, Rgb c, int t = 1) {
        fill_rect(x, y, w, t, c);
        fill_rect(x, y + h - t, w, t, c);
        fill_rect(x, y, t, h, c);
        fill_rect(x + w - t, y, t, h, c);
    }
    // A round pen of diameter `t` moved along the segment in half-pixel steps: simple,
    // and thick lines keep their width at any slope.
    void line(double x0, double y0, double x1, double y1, Rgb c, int t = 1) {
        const double len = std::hypot(x1 - x0, y1 - y0);
        const int steps = std::max(1, int(std::ceil(len * 2)));
        for (int s = 0; s <= steps; ++s) {
            const double f = double(s) / steps;
            dot(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, c, t);
        }
    }
    // A filled disc of diameter `d` centred on (cx, cy).
    void dot(double cx, double cy, Rgb c, int d) {
        if (d <= 1) return set(int(std::lround(cx)), int(std::lround(cy)), c);
        const double r = d / 2.0;
        for (int y = int(std::floor(cy - r)); y <= int(std::ceil(cy + r)); ++y)
            for (int x = int(std::floor(cx - r)); x <= int(std::ceil(cx + r)); ++x)
                if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) set(x, y, c);
    }
    // Text with its top-left corner at (x, y). vertical: turned 90 degrees
    // anticlockwise (read bottom to top, as a y-axis title), its top-left at (x, y).
    void text(int x, int y, const std::string& s, Rgb c, int scale = 1, bool vertical = false) {
        const int len = text_width(s, scale);
        for (std::size_t i = 0; i < s.size(); ++i) {
            const unsigned char ch = static_cast<unsigned char>(s[i]);
            std::array<std::uint8_t, 8> g{0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F, 0};  // unknown: a box
            if (ch >= 32 && ch <= 126) g = detail::font5x7()[ch - 32];
            for (int gy = 0; gy < kGlyphH; ++gy)
                for (int gx = 0; gx < kGlyphW; ++gx) {
                    if (!((g[std::size_t(gy)] >> (kGlyphW - 1 - gx)) & 1)) continue;
                    const int u = (int(i) * kAdvance + gx) * scale, v = gy * scale;  // along, across
                    if (vertical) fill_rect(x + v, y + len - u - scale, scale, scale, c);
                    else fill_rect(x + u, y + v, scale, scale, c);
                }
        }
    }
    // Text centred horizontally on cx.
    void text_centred(int cx, int y, const std::string& s, Rgb c, int scale = 1) {
        text(cx - text_width(s, scale) / 2, y, s, c, scale);
    }
    // A greyscale image (values in [0,1], row-major h x w) enlarged `zoom` times, with
    // its top-left at (x, y); 0 is drawn black, 1 white.
    void grey_image(int x, int y, const float* v, int w, int h, int zoom) {
        for (int j = 0; j < h; ++j)
            for (int i = 0; i < w; ++i) {
                const float f = std::clamp(v[std::size_t(j) * std::size_t(w) + std::size_t(i)], 0.0f, 1.0f);
                const auto b = static_cast<std::uint8_t>(std::lround(f * 255.0f));
                fill_rect(x + i * zoom, y + j * zoom, zoom, zoom, {b, b, b});
            }
    }
    // Writes an 8-bit RGB PNG (atomically; throws io::ImageError on failure).
    void save_png(const std::string& path) const { io::write_png(path, w_, h_, 3, px_); }

private:
    int w_, h_;
    std::vector<std::uint8_t> px_;  // (h, w, 3)
};

// ---- colour scales ---------------------------------------------------------------

inline Rgb mix(Rgb a, Rgb b, double t) {
    t = std::clamp(t, 0.0, 1.0);
    auto m = [t](std::uint8_t p, std::uint8_t q) {
        return static_cast<std::uint8_t>(std::lround(p + (double(q) - p) * t));
    };
    return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b)};
}
// Sequential scale for counts: t = 0 white, 0.5 mid blue, 1 dark navy.
inline Rgb sequential_colour(double t) {
    t = std::clamp(t, 0.0, 1.0);
    return t < 0.5 ? mix(kWhite, {90, 150, 210}, t * 2) : mix({90, 150, 210}, {8, 40, 100}, t * 2 - 1);
}
// Diverging scale for signed values: t = -1 blue, 0 white, +1 red.
inline Rgb diverging_colour(double t) {
    t = std::clamp(t, -1.0, 1.0);
    return t < 0 ? mix(kWhite, {30, 80, 180}, -t) : mix(kWhite, {190, 30, 30}, t);
}
// Black or white, whichever reads better on `bg` (by its luma).
inline Rgb text_colour_on(Rgb bg) {
    return 0.299 * bg.r + 0.587 * bg.g + 0.114 * bg.b < 140 ? kWhite : kBlack;
}

// A vertical colour bar at (x, y), w x h: colour(t) for t from 1 (top) to 0 (bottom),
// with a label right of the bar at each (t, text) tick.
template <class ColourOf>
void colour_bar(Canvas& c, int x, int y, int w, int h, ColourOf colour,
                const std::vector<std::pair<double, std::string>>& ticks, int scale = 2) {
    for (int j = 0; j < h; ++j) c.fill_rect(x, y + j, w, 1, colour(1.0 - double(j) / std::max(1, h - 1)));
    c.rect(x, y, w, h, kGrey);
    for (const auto& [t, label] : ticks) {
        const int ty = y + int(std::lround((1.0 - t) * (h - 1)));
        c.fill_rect(x + w, ty, 4, 1, kBlack);
        c.text(x + w + 7, ty - text_height(scale) / 2 + scale, label, kBlack, scale);
    }
}

// ---- axes and line charts ------------------------------------------------------

// "Nice" ticks covering [lo, hi]: a step of 1, 2 or 5 x 10^k giving at most `max_ticks`
// intervals; returns the ticks from floor(lo/step)*step to ceil(hi/step)*step.
// min_step: 1 for integer axes such as epochs.
inline std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6, double min_step = 0) {
    if (!(hi > lo)) {  // one value (or none): a unit-wide range around it
        const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
        lo -= pad, hi += pad;
    }
    const double raw = (hi - lo) / std::max(1, max_ticks);
    const double p = std::pow(10.0, std::floor(std::log10(raw)));
    double step = 10 * p;
    for (double m : {1.0, 2.0, 5.0})
        if (m * p >= raw) {
            step = m * p;
            break;
        }
    step = std::max(step, min_step);
    std::vector<double> t;
    const double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
    for (int k = 0; first + k * step <= last + step * 1e-6; ++k) t.push_back(first + k * step);
    return t;
}

// A tick value with just enough decimals for the step: 0.25 -> "0.25", 3 -> "3".
inline std::string tick_label(double v, double step) {
    const int decimals = std::max(0, int(std::ceil(-std::log10(step) - 1e-9)));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-6 ? 0.0 : v);
    return buf;
}

struct Series {
    std::string name;
    std::vector<double> x, y;  // same length
    Rgb colour = kBlue;
    bool square_markers = false;  // else round ones: tells series apart without colour
};

struct ChartLabels {
    std::string title, xlabel, ylabel;
    double x_min_step = 0;  // 1: integer x ticks (epochs)
};

// Where the plot area of a chart landed and how data maps to it (tests use it).
struct ChartFrame {
    int left = 0, top = 0, width = 0, height = 0;  // the plot area in pixels
    double x0 = 0, x1 = 1, y0 = 0, y1 = 1;         // the data range it shows
    double px(double x) const { return left + (x - x0) / (x1 - x0) * (width - 1); }
    double py(double y) const { return top + (y1 - y) / (y1 - y0) * (height - 1); }
};

// A line chart in the box (x, y, w, h) of the canvas: title, axes with ticks, light grid,
// each series as a 3-px line with markers, and a legend in the emptiest corner.
inline ChartFrame line_chart(Canvas& c, int x, int y, int w, int h, const std::vector<Series>& series,
                             const ChartLabels& labels, int scale = 2) {
    const int th = text_height(scale);
    double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
    for (const auto& s : series)
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
            xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
            ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
        }
    if (xmin > xmax) xmin = 0, xmax = 1, ymin = 0, ymax = 1;  // no data: empty axes
    const auto xt = nice_ticks(xmin, xmax, 8, labels.x_min_step);
    const auto yt = nice_ticks(ymin, ymax, 6);
    const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;

    // Margins: the widest y tick label + the y title on the left; x labels + title below.
    int ylab_w = 0;
    for (double v : yt) ylab_w = std::max(ylab_w, text_width(tick_label(v, ystep), scale));
    ChartFrame f;
    f.left = x + th + 2 * scale + ylab_w + 10;
    f.top = y + th + 4 * scale;
    f.width = x + w - 10 - f.left;
    f.height = y + h - (2 * th + 14) - f.top;
    // x: one epoch of air on each side looks better than points on the frame; y: the ticks.
    f.x0 = xt.front(), f.x1 = xt.back();
    if (labels.x_min_step > 0) f.x0 = std::min(f.x0, xmin - 0.5 * xstep), f.x1 = std::max(f.x1, xmax + 0.5 * xstep);
    f.x0 = std::max(f.x0, xmin - xstep), f.x1 = std::min(f.x1, xmax + xstep);
    f.y0 = yt.front(), f.y1 = yt.back();

    c.text_centred(x + w / 2, y, labels.title, kBlack, scale);
    for (double v : yt) {  // horizontal grid lines and y tick labels
        const int py = int(std::lround(f.py(v)));
        c.fill_rect(f.left, py, f.width, 1, kLightGrey);
        c.fill_rect(f.left - 5, py, 5, 1, kBlack);
        const std::string s = tick_label(v, ystep);
        c.text(f.left - 8 - text_width(s, scale), py - th / 2 + scale, s, kBlack, scale);
    }
    for (double v : xt) {
        if (v < f.x0 - 1e-9 || v > f.x1 + 1e-9) continue;
        const int px = int(std::lround(f.px(v)));
        c.fill_rect(px, f.top + f.height, 1, 5, kBlack);
        c.text_centred(px, f.top + f.height + 8, tick_label(v, xstep), kBlack, scale);
    }
    c.rect(f.left - 1, f.top - 1, f.width + 2, f.height + 2, kBlack);
    c.text_centred(f.left + f.width / 2, f.top + f.height + th + 14, labels.xlabel, kBlack, scale);
    c.text(x, f.top + f.height / 2 - text_width(labels.ylabel, scale) / 2, labels.ylabel, kBlack, scale, true);

    for (const auto& s : series) {
        for (std::size_t i = 1; i < s.x.size() && i < s.y.size(); ++i)
            c.line(f.px(s.x[i - 1]), f.py(s.y[i - 1]), f.px(s.x[i]), f.py(s.y[i]), s.colour, 3);
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
            const double px = f.px(s.x[i]), py = f.py(s.y[i]);
            if (s.square_markers) c.fill_rect(int(px) - 4, int(py) - 4, 9, 9, s.colour);
            else c.dot(px, py, s.colour, 10);
        }
    }

    // Legend: a line sample and the name per series, in the corner with fewest data points.
    int name_w = 0;
    for (const auto& s : series) name_w = std::max(name_w, text_width(s.name, scale));
    const int row_h = th + 8, lw = 40 + name_w + 16, lh = int(series.size()) * row_h + 8;
    int best_x = 0, best_y = 0;
    long best_hits = -1;
    for (int corner = 0; corner < 4; ++corner) {
        const int lx = corner % 2 ? f.left + 8 : f.left + f.width - lw - 8;
        const int ly = corner / 2 ? f.top + f.height - lh - 8 : f.top + 8;
        long hits = 0;  // points sampled along the series that the legend would hide or touch
        for (const auto& s : series)
            for (std::size_t i = 1; i < s.x.size() && i < s.y.size(); ++i)
                for (int k = 0; k <= 20; ++k) {
                    const double px = f.px(s.x[i - 1] + (s.x[i] - s.x[i - 1]) * k / 20.0);
                    const double py = f.py(s.y[i - 1] + (s.y[i] - s.y[i - 1]) * k / 20.0);
                    hits += px >= lx - 16 && px <= lx + lw + 16 && py >= ly - 16 && py <= ly + lh + 16;
                }
        if (best_hits < 0 || hits < best_hits) best_hits = hits, best_x = lx, best_y = ly;
    }
    c.fill_rect(best_x, best_y, lw, lh, kWhite);
    c.rect(best_x, best_y, lw, lh, kGrey);
    for (std::size_t i = 0; i < series.size(); ++i) {
        const int ry = best_y + 4 + int(i) * row_h + row_h / 2;
        c.line(best_x + 8, ry, best_x + 36, ry, series[i].colour, 3);
        if (series[i].square_markers) c.fill_rect(best_x + 18, ry - 4, 9, 9, series[i].colour);
        else c.dot(best_x + 22, ry, series[i].colour, 10);
        c.text(best_x + 44, ry - th / 2 + scale, series[i].name, kBlack, scale);
    }
    return f;
}

// ---- heat map --------------------------------------------------------------------

// Where the cells of a heat map are: cell (r, k) covers
// [left + k*cell, left + (k+1)*cell) x [top + r*cell, top + (r+1)*cell).
struct HeatMapFrame {
    int left = 0, top = 0, cell = 0, rows = 0, cols = 0;
};

// A heat map is a rows x cols matrix of counts as coloured cells with the count printed
// in each. Colour: log(1 + count) / log(1 + max), so that a handful of errors is visible
// next to a diagonal of a thousand. Row labels on the left, column labels above (turned
// vertical when they do not fit the cell), and a colour bar on the right.
// heat_map_layout() measures the block (so the caller can size the canvas), heat_map()
// draws it with its top-left corner at (x, y).
struct HeatMapLayout {
    int cell = 64, scale = 2;
    int label_w = 0, label_h = 0;  // room for row / column labels
    bool vertical_cols = false;
    int width = 0, height = 0;     // of the whole block, colour bar included
};
inline HeatMapLayout heat_map_layout(const std::vector<std::string>& row_labels,
                                     const std::vector<std::string>& col_labels, int cell = 64, int scale = 2) {
    HeatMapLayout L;
    L.cell = cell, L.scale = scale;
    for (const auto& s : row_labels) L.label_w = std::max(L.label_w, text_width(s, scale));
    int col_w = 0;
    for (const auto& s : col_labels) col_w = std::max(col_w, text_width(s, scale));
    L.vertical_cols = col_w > cell - 6;
    L.label_w += 10;
    L.label_h = (L.vertical_cols ? col_w : text_height(scale)) + 10;
    L.width = L.label_w + int(col_labels.size()) * cell + 24 + 24 + 8 + text_width("10000", scale);
    L.height = L.label_h + int(row_labels.size()) * cell;
    return L;
}
inline double heat_value(double count, double max_count) {
    return max_count > 0 ? std::log1p(std::max(0.0, count)) / std::log1p(max_count) : 0.0;
}
inline HeatMapFrame heat_map(Canvas& c, int x, int y, const std::vector<std::vector<std::int64_t>>& counts,
                             const std::vector<std::string>& row_labels,
                             const std::vector<std::string>& col_labels, const HeatMapLayout& L) {
    HeatMapFrame f;
    f.rows = int(row_labels.size()), f.cols = int(col_labels.size()), f.cell = L.cell;
    f.left = x + L.label_w, f.top = y + L.label_h;
    if (int(counts.size()) != f.rows)
        throw std::invalid_argument("heat_map: " + std::to_string(counts.size()) + " rows of counts for " +
                                    std::to_string(f.rows) + " row labels");
    std::int64_t max_count = 0;
    for (const auto& row : counts) {
        if (int(row.size()) != f.cols)
            throw std::invalid_argument("heat_map: a row of " + std::to_string(row.size()) + " counts for " +
                                        std::to_string(f.cols) + " column labels");
        for (auto v : row) max_count = std::max(max_count, v);
    }
    const int th = text_height(L.scale);
    for (int r = 0; r < f.rows; ++r) {
        const std::string& s = row_labels[size_t(r)];
        c.text(f.left - 10 - text_width(s, L.scale), f.top + r * L.cell + (L.cell - th) / 2 + L.scale, s, kBlack,
               L.scale);
        for (int k = 0; k < f.cols; ++k) {
            const std::int64_t n = counts[size_t(r)][size_t(k)];
            const Rgb bg = sequential_colour(heat_value(double(n), double(max_count)));
            const int cx = f.left + k * L.cell, cy = f.top + r * L.cell;
            c.fill_rect(cx, cy, L.cell, L.cell, bg);
            c.text_centred(cx + L.cell / 2, cy + (L.cell - th) / 2 + L.scale, std::to_string(n), text_colour_on(bg),
                           L.scale);
        }
    }
    for (int k = 0; k < f.cols; ++k) {
        const std::string& s = col_labels[size_t(k)];
        const int cx = f.left + k * L.cell + L.cell / 2;
        if (L.vertical_cols) c.text(cx - th / 2, f.top - 8 - text_width(s, L.scale), s, kBlack, L.scale, true);
        else c.text_centred(cx, f.top - 8 - th, s, kBlack, L.scale);
    }
    // Thin grid lines between the cells, and a frame.
    for (int k = 1; k < f.cols; ++k) c.fill_rect(f.left + k * L.cell, f.top, 1, f.rows * L.cell, kWhite);
    for (int r = 1; r < f.rows; ++r) c.fill_rect(f.left, f.top + r * L.cell, f.cols * L.cell, 1, kWhite);
    c.rect(f.left - 1, f.top - 1, f.cols * L.cell + 2, f.rows * L.cell + 2, kGrey);

    // Colour bar: ticks at 0, 1, 10, 100, ... up to the largest count, and the largest
    // count itself at the top unless it would overlap the last power of ten.
    std::vector<std::pair<double, std::string>> ticks;
    for (std::int64_t v = 0; v <= max_count; v = v ? v * 10 : 1)
        ticks.push_back({heat_value(double(v), double(max_count)), std::to_string(v)});
    const int bar_h = f.rows * L.cell;
    if (max_count > 0 && (1.0 - ticks.back().first) * bar_h > th + 4) ticks.push_back({1.0, std::to_string(max_count)});
    colour_bar(c, f.left + f.cols * L.cell + 24, f.top, 24, bar_h, sequential_colour, ticks, L.scale);
    return f;
}

}  // namespace kitnn::viz
