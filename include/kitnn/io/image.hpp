// kitnn/io/image.hpp — load PNG/JPEG (anything stb_image reads) as greyscale floats,
// and write greyscale PNGs atomically.
//
// stb is used as a compiled library (libstb, linked by kitnn::kitnn), so this header
// includes only its declarations and must NOT define STB_IMAGE_IMPLEMENTATION.
#pragma once

#include "kitnn/io/atomic_file.hpp"

#include <stb_image.h>
#include <stb_image_write.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kitnn::io {

struct ImageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Largest image load_grey decodes (8192 x 8192): far above any digit drawing or photo,
// and it bounds what a corrupt header can make the decoder allocate.
constexpr long long kMaxImagePixels = 1LL << 26;

struct GreyImage {
    int width = 0, height = 0;
    std::vector<float> pixels;  // row-major, height * width values in [0,1]; 0 = black, 1 = white
};

namespace detail {
// Two holes in the JPEG decoder of Debian 12's libstb-dev (stb_image 2.27), both
// found here by tests/fuzz, are closed by walking a JPEG's marker segments before stb
// sees the file:
//  * stb trusts the code counts of a Huffman table (DHT): counts summing past 256
//    overrun its 257-entry tables with bytes from the file (heap corruption; upstream
//    nothings/stb#1289 and #1291).
//  * stb decodes a scan (SOS) with whatever Huffman table slot the scan names, defined
//    or not, and dequantises with whatever quantisation table (DQT) a component names.
//    A slot no DHT/DQT filled holds uninitialised heap memory: the result depends on
//    what the heap held before (a garbage image, "bad huffman code", or stb's own
//    assert at stb_image.h:2115, which Debian's libstb.so keeps compiled in, aborting
//    the program). libjpeg refuses such a file ("Huffman table 0x.. was not defined");
//    so does this check. Only the tables stb will read are required: a sequential scan
//    reads both tables of each component, a progressive one the DC table in its first
//    DC pass and the AC table in AC passes.
// Returns "" when `f` is not a JPEG or nothing is wrong that stb would not report
// itself, else the reason; the caller rewinds `f`.
inline std::string check_jpeg_tables(std::FILE* f) {
    auto get = [f] { return std::fgetc(f); };
    // stb skips 0xFF fill bytes before every marker, the start-of-image one too: so
    // does this check ("FF FF D8" is a JPEG for stb; found by fuzzing in CI).
    if (get() != 0xFF) return "";  // not a JPEG
    int soi = get();
    while (soi == 0xFF) soi = get();
    if (soi != 0xD8) return "";
    bool huffman[2][4] = {};  // [class: 0 DC, 1 AC][slot]: defined by a DHT so far
    bool quant[4] = {};       // [slot]: defined by a DQT so far
    bool have_frame = false, progressive = false;
    std::vector<std::pair<int, int>> frame;  // (component id, quantisation slot) from SOF
    std::vector<int> seg;                    // one segment's bytes (EOF past the end)
    for (;;) {
        int c = get();
        if (c == EOF) return "";
        if (c != 0xFF) continue;  // entropy-coded data between markers
        do c = get(); while (c == 0xFF);  // fill bytes
        if (c == EOF || c == 0xD9) return "";  // end of file / end of image
        if (c == 0x00 || c == 0x01 || (c >= 0xD0 && c <= 0xD7)) continue;  // stuffing, TEM, RSTn
        const int hi = get(), lo = get();
        if (hi == EOF || lo == EOF) return "";
        const long left = ((long(hi) << 8) | lo) - 2;  // segment length without its 2 length bytes
        const bool sof = c == 0xC0 || c == 0xC1 || c == 0xC2;  // the frames stb decodes
        if (c == 0xC4) {  // DHT: tables of (class/slot, 16 counts, sum(counts) values)
            // Read from the stream as stb does: a table whose counts run past the
            // segment's length takes the following bytes (stb fails only afterwards).
            long rest = left;
            while (rest > 0) {
                const int q = get();
                if (q == EOF) return "";
                long codes = 0;
                for (int i = 0; i < 16; ++i) {  // stb reads past the end as zeros: so do we
                    const int k = get();
                    if (k != EOF) codes += k;
                }
                if (codes > 256)
                    return "corrupt JPEG: a Huffman table declares " + std::to_string(codes) +
                           " codes (at most 256)";
                if ((q >> 4) > 1 || (q & 15) > 3) return "";  // stb: "bad DHT header"
                huffman[q >> 4][q & 15] = true;
                if (std::fseek(f, codes, SEEK_CUR) != 0) return "";
                rest -= 17 + codes;
            }
            if (rest != 0) return "";  // stb: a DHT longer than its segment fails
            continue;
        }
        if (c != 0xDB && c != 0xDA && !sof) {
            // A segment that runs to or past the end is refused: a memory stream
            // (decode_grey's fmemopen) cannot seek past its end, and stb, which ignores a
            // failed skip, would go on reading the segment's bytes as markers (fuzz
            // finding: a DHT of more than 256 codes hidden in an APP0's length); a file
            // seeks there and reads EOF. Both give this one error (no image follows).
            int next = EOF;
            if (left > 0 && std::fseek(f, left, SEEK_CUR) == 0) next = get();
            else if (left <= 0) next = get();
            if (next == EOF)
                return "corrupt JPEG: a segment of " + std::to_string(left) +
                       " bytes runs to or past the end of the data";
            std::ungetc(next, f);
            continue;
        }
        // DQT, SOF, SOS: stb checks that their contents fill the declared length, so
        // the segment's bytes are all it reads.
        seg.clear();
        for (long i = 0; i < left; ++i) seg.push_back(get());
        auto at = [&](long i) { return i < long(seg.size()) && seg[size_t(i)] != EOF ? seg[size_t(i)] : 0; };
        if (c == 0xDB) {  // DQT: tables of (precision/slot, 64 or 128 bytes)
            long i = 0;
            while (i < left) {
                const int pq = at(i) >> 4, tq = at(i) & 15;
                if (pq > 1 || tq > 3) return "";  // stb: "bad DQT type" / "bad DQT table"
                quant[tq] = true;
                i += 1 + 64 * (pq + 1);
            }
        } else if (sof) {  // precision, height, width, count, then (id, sampling, slot) each
            have_frame = true;
            progressive = c == 0xC2;
            frame.clear();
            for (long k = 0, n = at(5); k < n; ++k) frame.emplace_back(at(6 + 3 * k), at(8 + 3 * k));
        } else {  // SOS: count, (id, DC slot << 4 | AC slot) each, Ss, Se, Ah << 4 | Al
            if (!have_frame) return "";  // stb: "no SOF"
            const long n = at(0);
            const int ss = at(1 + 2 * n), ah = at(3 + 2 * n) >> 4;
            const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss != 0;
            for (long k = 0; k < n; ++k) {
                const int id = at(1 + 2 * k), td = at(2 + 2 * k) >> 4, ta = at(2 + 2 * k) & 15;
                int tq = -1;
                for (const auto& comp : frame)
                    if (comp.first == id) tq = comp.second;
                if (tq < 0 || tq > 3 || td > 3 || ta > 3) return "";  // stb reports these itself
                auto missing = [&](const char* what, int slot) {
                    return "corrupt JPEG: component " + std::to_string(id) + " uses " + what +
                           " table " + std::to_string(slot) + ", which no earlier segment defines";
                };
                if (dc && !huffman[0][td]) return missing("DC Huffman", td);
                if (ac && !huffman[1][ta]) return missing("AC Huffman", ta);
                if (!quant[tq]) return missing("quantisation", tq);
            }
        }
    }
}

// The name the first version of the check had (it then looked at DHT counts only).
inline std::string check_jpeg_huffman_tables(std::FILE* f) { return check_jpeg_tables(f); }

// Debian 12's stb_image (2.27) also trusts the length of a PNG's IDAT chunk: it grows
// its buffer for the compressed data to that length before reading it, so an 81-byte
// file declaring a 1.4 GB chunk makes it allocate 1.4 GB (found by tests/fuzz in CI;
// newer stb caps IDAT at 2^30 bytes, still far more than a small file backs). No chunk
// can be longer than what is left of the file: load_grey walks a PNG's chunks (4-byte
// big-endian length, 4-byte type, data, 4-byte CRC) and refuses one that is. Returns
// "" when `f` is not a PNG or every chunk fits, else the reason; the caller rewinds `f`.
inline std::string check_png_chunks(std::FILE* f) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char b[8];
    if (std::fread(b, 1, 8, f) != 8 || std::memcmp(b, signature, 8) != 0) return "";  // not a PNG
    if (std::fseek(f, 0, SEEK_END) != 0) return "";
    const long size = std::ftell(f);
    if (size < 8 || std::fseek(f, 8, SEEK_SET) != 0) return "";
    long pos = 8;
    while (pos < size) {
        if (std::fread(b, 1, 8, f) != 8) return "";  // a cut-off chunk header: stb reports it
        pos += 8;
        const unsigned long length = (static_cast<unsigned long>(b[0]) << 24) |
                                     (static_cast<unsigned long>(b[1]) << 16) |
                                     (static_cast<unsigned long>(b[2]) << 8) | b[3];
        std::string type;
        for (int i = 4; i < 8; ++i) type += (b[i] >= 0x20 && b[i] < 0x7F) ? char(b[i]) : '?';
        if (length > static_cast<unsigned long>(size - pos))
            return "corrupt PNG: chunk '" + type + "' declares " + std::to_string(length) +
                   " bytes, but only " + std::to_string(size - pos) + " are left in the file";
        if (type == "IEND") return "";
        pos += long(length) + 4;  // data and CRC
        if (std::fseek(f, long(length) + 4, SEEK_CUR) != 0) return "";
    }
    return "";
}
}  // namespace detail

namespace detail {
// load_grey and decode_grey after opening: the checks of the stream `f` (a file, or
// bytes in memory through fmemopen), the size limit, decoding and the conversion to
// grey. `name` (the path, or e.g. "request body") starts every error message.
inline GreyImage load_grey_stream(std::FILE* f, const std::string& name) {
    const std::string bad_jpeg = check_jpeg_huffman_tables(f);
    if (!bad_jpeg.empty()) throw ImageError(name + ": cannot read image: " + bad_jpeg);
    std::rewind(f);
    const std::string bad_png = check_png_chunks(f);
    if (!bad_png.empty()) throw ImageError(name + ": cannot read image: " + bad_png);
    std::rewind(f);
    // stb allocates (and clears) the size a header promises before it reads any pixel:
    // a 35-byte GIF claiming 17937x21071 costs 3.4 GB. Refuse absurd sizes up front.
    int w = 0, h = 0, channels = 0;
    if (stbi_info_from_file(f, &w, &h, &channels) &&
        static_cast<long long>(w) * static_cast<long long>(h) > kMaxImagePixels)
        throw ImageError(name + ": cannot read image: its header says " + std::to_string(w) + "x" +
                         std::to_string(h) + " pixels, more than the " + std::to_string(kMaxImagePixels) +
                         " this loader accepts (corrupt file?)");

    // desired_channels = 0: keep the file's channels, so alpha can be composited here.
    std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load_from_file(f, &w, &h, &channels, 0),
                                                   &stbi_image_free);
    if (!data) {
        const char* why = stbi_failure_reason();
        throw ImageError(name + ": cannot read image: " + (why ? why : "unknown error") +
                         " (supported: PNG, JPEG, BMP, GIF, TGA, PSD, PNM, HDR)");
    }

    // stb accepts a PNM header with a zero width or height (e.g. "P5\n\0...") and
    // returns a 0x0 "image": refuse it here, callers rely on width, height >= 1.
    if (w <= 0 || h <= 0)
        throw ImageError(name + ": cannot read image: it has no pixels (" + std::to_string(w) + "x" +
                         std::to_string(h) + ")");

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
}  // namespace detail

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
    return detail::load_grey_stream(f.get(), path);
}

// The same for an image held in memory (an HTTP request body, a file read by the
// caller): the same checks, the same size limit and the same grey conversion as
// load_grey, so the bytes of a file give exactly the pixels load_grey gives for it.
// `name` starts every error message. Empty input is refused.
inline GreyImage decode_grey(const void* bytes, std::size_t size, const std::string& name) {
    if (size == 0) throw ImageError(name + ": cannot read image: no bytes");
    // fmemopen (POSIX 2008): the checks and stb's *_from_file read through a FILE*, so
    // memory goes the very same way as a file. "r": the buffer is only read.
    errno = 0;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(fmemopen(const_cast<void*>(bytes), size, "r"),
                                                      &std::fclose);
    if (!f) throw ImageError(name + ": cannot read image from memory: " + std::strerror(errno));
    return detail::load_grey_stream(f.get(), name);
}

// Writes a w x h 8-bit greyscale PNG (row-major px), atomically like write_png.
// durable = false: see write_file_atomic (then io's caller calls sync_files at the end).
inline void write_png(const std::string& path, int w, int h, int channels,
                      const std::vector<std::uint8_t>& px, bool durable = true);
inline void write_png_grey(const std::string& path, int w, int h, const std::vector<std::uint8_t>& px,
                           bool durable = true) {
    write_png(path, w, h, 1, px, durable);
}

// Writes a w x h PNG with 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) 8-bit channels,
// interleaved row-major. Atomic (io/atomic_file.hpp): encoded in memory, written to a temporary,
// fsynced and renamed over `path`, so a reader never sees half a file and a failed write leaves
// any previous file untouched. Throws ImageError on failure.
inline void write_png(const std::string& path, int w, int h, int channels, const std::vector<std::uint8_t>& px,
                      bool durable) {
    if (w <= 0 || h <= 0 || channels < 1 || channels > 4 ||
        px.size() != static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * static_cast<std::size_t>(channels))
        throw ImageError(path + ": write_png: " + std::to_string(px.size()) +
                         (channels == 1 ? " pixels for " : " bytes for ") + std::to_string(w) + "x" +
                         std::to_string(h) + (channels == 1 ? "" : "x" + std::to_string(channels)));
    // Encode in memory, then the same crash-safe write as model files.
    std::vector<char> png;
    auto append = [](void* ctx, void* data, int size) {
        auto* out = static_cast<std::vector<char>*>(ctx);
        out->insert(out->end(), static_cast<char*>(data), static_cast<char*>(data) + size);
    };
    if (!stbi_write_png_to_func(append, &png, w, h, channels, px.data(), w * channels))
        throw ImageError(path + ": cannot encode PNG");
    try {
        write_file_atomic(path, png, durable);
    } catch (const FileError& e) {
        throw ImageError(e.what());
    }
}

// [0,1] floats to bytes (rounded, clamped): the inverse of load_grey for a grey PNG.
inline std::vector<std::uint8_t> to_bytes(const GreyImage& img) {
    std::vector<std::uint8_t> px(img.pixels.size());
    for (std::size_t i = 0; i < px.size(); ++i) {
        const float v = img.pixels[i] < 0.0f ? 0.0f : (img.pixels[i] > 1.0f ? 1.0f : img.pixels[i]);
        px[i] = static_cast<std::uint8_t>(v * 255.0f + 0.5f);
    }
    return px;
}

// Writes a GreyImage as an 8-bit greyscale PNG (atomically, see write_png_grey).
inline void write_png_grey(const std::string& path, const GreyImage& img) {
    write_png_grey(path, img.width, img.height, to_bytes(img));
}

}  // namespace kitnn::io
