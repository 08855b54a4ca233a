// libFuzzer target: the IDX reader (kitnn/data/idx.hpp), raw and gzipped.
// Input layout: byte 0 selects the entry point, the rest is file content:
//   0: read_idx_bytes(file, labels magic 0x801)
//   1: read_idx_bytes(file, images magic 0x803)
//   2: load_idx(images, labels) where bytes 1-2 (little-endian) give the labels
//      file's length, then the labels file, then the images file
//   3: read_idx_bytes(file, 0x00000D02: float32, 2 dims) — other element sizes
// Every DataError is an expected outcome; anything else (crash, other exception,
// leak, out-of-memory, timeout) is a finding.
#include "fuzz_common.hpp"

#include <kitnn/data/idx.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    static const std::string a = kitnn_fuzz::temp_path("idx_a"), b = kitnn_fuzz::temp_path("idx_b");
    const int mode = data[0] % 4;
    ++data, --size;
    try {
        std::vector<std::uint32_t> dims;
        if (mode == 2) {
            if (size < 2) return 0;
            std::size_t nl = data[0] | (std::size_t(data[1]) << 8);
            data += 2, size -= 2;
            if (nl > size) nl = size;
            kitnn_fuzz::write_file(b, data, nl);
            kitnn_fuzz::write_file(a, data + nl, size - nl);
            const auto ds = kitnn::data::load_idx(a, b);
            // What load_idx promises: one label per image, images (N, 1, rows, cols).
            if (ds.labels.size() != std::size_t(ds.images.dimension(0)) || ds.images.dimension(1) != 1)
                std::abort();
        } else {
            const std::uint32_t magic = mode == 0 ? kitnn::data::kIdxLabelsMagic
                                      : mode == 1 ? kitnn::data::kIdxImagesMagic
                                                  : 0x00000D02u;
            kitnn_fuzz::write_file(a, data, size);
            const auto bytes = kitnn::data::read_idx_bytes(a, magic, dims);
            std::uint64_t count = mode == 3 ? 4 : 1;
            for (auto d : dims) count *= d;
            if (dims.size() != (magic & 0xff) || bytes.size() != count) std::abort();
        }
    } catch (const kitnn::data::DataError&) {
    }
    return 0;
}
