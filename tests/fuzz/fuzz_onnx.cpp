// libFuzzer target: the ONNX importer, parse_onnx<float> (kitnn/onnx/onnx.hpp), which
// reads files from anywhere: protobuf parsing, then the graph walk, every tensor's dims
// against its data, the limits on layers and activations. OnnxError is expected;
// anything else (another exception, a crash, a sanitizer report, a leak) is a finding.
// A graph that imports is run on a zero batch (if small) and must export and import
// again. Seeds: tests/fuzz/corpus/onnx, written by `onnx_probe seeds DIR`.
// Built by run.sh with -DONNX_NAMESPACE=onnx -DONNX_ML=1 -lonnx_proto -lprotobuf.
#include <kitnn/onnx/onnx.hpp>

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto model = kitnn::parse_onnx<float>(data, size, "fuzz.onnx");
        if (model.input_shape().size() <= 4096 && model.macs() <= 2000000 && model.output_shape().size() <= 4096) {
            const auto& in = model.input_shape();
            kitnn::Tensor<float> x(1, in.c(), in.h(), in.w());
            x.setZero();
            (void)model.predict(x);
        }
        const auto again = kitnn::serialize_onnx(kitnn::to_onnx(model));
        auto back = kitnn::parse_onnx<float>(again.data(), again.size(), "fuzz-roundtrip.onnx");
        if (back.size() != model.size() || back.param_count() != model.param_count())
            std::abort();  // an imported model must survive export + import
    } catch (const kitnn::OnnxError&) {
    }
    return 0;
}
