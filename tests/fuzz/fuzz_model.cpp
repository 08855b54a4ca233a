// libFuzzer target: the model loader, deserialize_model<float> (kitnn/io/model_file.hpp).
// A file whose CRC-32 does not match is refused before parsing, so random mutations
// would almost never get past the checksum: each input is tried as is AND with its
// last four bytes replaced by the correct CRC, so the parser itself is fuzzed.
// A model that loads is then (if small) run on a zero batch and saved and loaded
// again. ModelFileError is expected; anything else is a finding.
#include <kitnn/io/model_file.hpp>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {
void try_load(const std::vector<char>& bytes) {
    try {
        auto model = kitnn::deserialize_model<float>(bytes, "fuzz.kitnn");
        // Run the loaded model only when it is cheap: fuzzing the loader, not
        // benchmarking absurd (but valid) architectures.
        if (model.input_shape().size() <= 4096 && model.macs() <= 2000000 &&
            model.output_shape().size() <= 4096) {
            const auto& in = model.input_shape();
            kitnn::Tensor<float> x(1, in.c(), in.h(), in.w());
            x.setZero();
            (void)model.predict(x);
        }
        const auto again = kitnn::serialize_model(model);
        auto reloaded = kitnn::deserialize_model<float>(again, "fuzz-roundtrip.kitnn");
        if (reloaded.size() != model.size() || reloaded.param_count() != model.param_count())
            std::abort();  // a loaded model must survive a save/load round trip
    } catch (const kitnn::ModelFileError&) {
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<char> bytes(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size);
    try_load(bytes);
    if (size >= 24) {
        const std::uint32_t crc = kitnn::detail::crc32_of(bytes.data(), size - 4);
        for (int i = 0; i < 4; ++i) bytes[size - 4 + i] = char((crc >> (8 * i)) & 0xff);
        try_load(bytes);
    }
    return 0;
}
