// kitnn_onnx — models in and out of kitnn through ONNX (docs/onnx.md).
//
//   kitnn_onnx export model.kitnn model.onnx [--softmax] [--opset 13]
//   kitnn_onnx import model.onnx model.kitnn
//
// export writes every layer type (Branches too, BatchNorm in inference form, Dropout as
// the identity); --softmax appends a Softmax so the graph outputs probabilities, as
// mnist_apply prints them. import reads graphs built from the ops in docs/onnx.md and
// refuses anything else with an error naming the node, its op type and what kitnn cannot
// express. Both write atomically: a failure never leaves a half-written file.
#include "cli.hpp"

#include <kitnn/io/model_file.hpp>
#include <kitnn/onnx/onnx.hpp>

#include <iostream>

using namespace kitnn;

int main(int argc, char** argv) {
    CLI::App app{"kitnn_onnx: export kitnn models to ONNX, import ONNX graphs into kitnn (docs/onnx.md)"};
    app.require_subcommand(1);
    std::string in, out;
    bool softmax = false;
    int opset = 13;
    auto* ex = app.add_subcommand("export", "write a kitnn model (.kitnn) as ONNX");
    ex->add_option("IN", in, "kitnn model file")->required();
    ex->add_option("OUT", out, "ONNX file to write")->required();
    ex->add_flag("--softmax", softmax,
                 "append a Softmax: the graph outputs probabilities (not logits), unless the model ends in one");
    ex->add_option("--opset", opset, "ONNX opset version to declare")
        ->check(CLI::Range(kOnnxMinExportOpset, kOnnxMaxOpset))
        ->capture_default_str();
    auto* im = app.add_subcommand("import", "read an ONNX graph into a kitnn model (.kitnn)");
    im->add_option("IN", in, "ONNX file")->required();
    im->add_option("OUT", out, "kitnn model file to write")->required();
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    return kitnn_examples::guarded("kitnn_onnx", [&] {
        if (ex->parsed()) {
            auto model = load_model<float>(in);
            OnnxExportOptions opt;
            opt.opset = opset;
            opt.softmax = softmax;
            save_onnx(out, model, opt);
            std::cout << "wrote " << out << ": " << model.size() << " layers, "
                      << Sequential<float>::group(model.param_count()) << " parameters, opset " << opset
                      << (softmax ? ", probabilities out" : "") << "\n";
        } else {
            auto model = load_onnx<float>(in);
            save_model(out, model, {{"source", "onnx"}});
            std::cout << "wrote " << out << ": " << model.size() << " layers, "
                      << Sequential<float>::group(model.param_count()) << " parameters\n"
                      << model.summary("imported");
        }
        return 0;
    });
}
