// kitnn/io/image.hpp — load PNG/JPEG (anything stb_image reads) as greyscale floats,
// and write greyscale PNGs atomically.
//
// stb is used as a compiled library (libstb, linked by kitnn::kitnn), so this header
// includes only its declarations and must NOT define STB_IMAGE_IMPLEMENTATION.
#pragma once

#include <stb_image.h>
#include <stb_image_write.h>

#include <unistd.h>  // getpid, for the temporary file's name

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::io {

struct ImageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct GreyImage {
    int width = 0, height = 0;
    std::vector<float> pixels;  // row-major, height * width values in [0,1]; 0 = black, 1 = white
};

// Loads an image file as greyscale in [0,1].
//  * Colour is converted with the ITU-R BT.601 luma weights 0.299 R + 0.587 G + 0.114 B
//    (what JPEG and most tools use for "convert to grey").
//  * Transparency is composited over WHITE: a digit drawn in dark ink on a transparent
//    canvas (the usual export of drawing apps) must stay dark ink on a light page.
//    Over black, its transparent background would turn black and the digit vanish.
//  * 16-bit files are reduced to 8 bits by stb before conversion.
// Note: MNIST digits are white on black; inverting a black-on-white drawing is the
// caller's decision, not the loader's.
inline GreyImage load_grey(const std::string& path) {
    // Open the file ourselves: stb reports a missing file only as "can't fopen".
    errno = 0;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw ImageError(path + ": cannot open: " + std::strerror(errno));

    int w = 0, h = 0, channels = 0;
    // desired_channels = 0: keep the file's channels, so alpha can be composited here.
    std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load_from_file(f.get(), &w, &h, &channels, 0),
                                                   &stbi_image_free);
    if (!data) {
        const char* why = stbi_failure_reason();
        throw ImageError(path + ": cannot read image: " + (why ? why : "unknown error") +
                         " (supported: PNG, JPEG, BMP, GIF, TGA, PSD, PNM, HDR)");
    }

    GreyImage img;
    img.width = w;
    img.height = h;
    const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    img.pixels.resize(n);
    const stbi_uc* p = data.get();
    for (std::size_t i = 0; i < n; ++i, p += channels) {
        float grey, alpha = 1.0f;
        switch (channels) {
            case 1: grey = p[0] / 255.0f; break;
            case 2: grey = p[0] / 255.0f; alpha = p[1] / 255.0f; break;
            case 3: grey = (0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]) / 255.0f; break;
            default:  // 4: RGBA
                grey = (0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]) / 255.0f;
                alpha = p[3] / 255.0f;
                break;
        }
        // Over white: result = alpha * colour + (1 - alpha) * 1.
        const float v = alpha * grey + (1.0f - alpha);
        img.pixels[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
    return img;
}

// Writes a w x h 8-bit greyscale PNG (row-major px). Atomic: the PNG is written to
// "path.tmp.<pid>" and renamed over `path`, so a reader never sees half a file and a
// failed write leaves any previous file untouched. Throws ImageError on failure.
inline void write_png_grey(const std::string& path, int w, int h, const std::vector<std::uint8_t>& px) {
    if (w <= 0 || h <= 0 || px.size() != static_cast<std::size_t>(w) * static_cast<std::size_t>(h))
        throw ImageError(path + ": write_png_grey: " + std::to_string(px.size()) + " pixels for " +
                         std::to_string(w) + "x" + std::to_string(h));
    const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
    errno = 0;
    if (!stbi_write_png(tmp.c_str(), w, h, 1, px.data(), w)) {
        // stb_image_write gives no reason; errno from its fopen/fwrite is the best we have.
        const int e = errno;
        std::remove(tmp.c_str());
        throw ImageError(path + ": cannot write PNG (via " + tmp + "): " +
                         (e ? std::strerror(e) : "stbi_write_png failed"));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        throw ImageError(path + ": cannot rename " + tmp + " to it: " + std::strerror(e));
    }
}

}  // namespace kitnn::io
