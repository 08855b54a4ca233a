// libFuzzer target: image loading, kitnn::io::decode_grey (kitnn/io/image.hpp): the
// loader of kitnn_serve's request bodies, and load_grey's code after fopen (the two share
// detail::load_grey_stream; tests/test_image_memory.cpp checks they agree on every corpus
// file). It decodes with stb_image. Here stb_image is compiled into the target (same Debian
// libstb-dev header as the library kitnn links), so the sanitizers and the coverage
// guidance see inside the decoder too. ImageError is expected; anything else is a finding.
#include "fuzz_common.hpp"

#include <kitnn/io/image.hpp>

// After image.hpp's include of the declarations: a second include with this macro
// emits only the implementation.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Headers between 4 Mpx and load_grey's limit (kMaxImagePixels) are valid but make
    // stb allocate and clear hundreds of MB (seconds under ASan): skip them, so the
    // time goes into decoding; above the limit load_grey refuses them cheaply.
    // (stbi_info itself parses JPEG Huffman tables: only after load_grey's own check.)
    std::FILE* mem = size ? fmemopen(const_cast<std::uint8_t*>(data), size, "rb") : nullptr;
    const bool jpeg_ok = !mem || kitnn::io::detail::check_jpeg_tables(mem).empty();
    if (mem) std::fclose(mem);
    int w = 0, h = 0, n = 0;
    if (jpeg_ok && size <= 0x7fffffff && stbi_info_from_memory(data, int(size), &w, &h, &n)) {
        const long long px = static_cast<long long>(w) * h;
        if (px > (1LL << 22) && px <= kitnn::io::kMaxImagePixels) return 0;
    }
    try {
        const auto img = kitnn::io::decode_grey(data, size, "input");
        if (img.width <= 0 || img.height <= 0 ||
            img.pixels.size() != std::size_t(img.width) * std::size_t(img.height))
            std::abort();
        for (float v : img.pixels)
            if (!(v >= 0.0f && v <= 1.0f)) std::abort();  // also catches NaN
    } catch (const kitnn::io::ImageError&) {
    }
    return 0;
}
