// kitnn/model/clone.hpp — an independent copy of a model, for one thread each.
//
//   Sequential<float> model = load_model<float>("best.kitnn");
//   std::vector<std::thread> pool;
//   for (int t = 0; t < 4; ++t)
//       pool.emplace_back([copy = clone_model(model), &inputs, t]() mutable {
//           Tensor<float> probs = copy.predict(inputs[t]);   // each thread its own copy
//       });
//
// Why a copy: Sequential::predict (and forward/backward) writes into buffers the model
// owns — acts_[i], the layers' im2col/GEMM workspaces, the pointer to the current
// input — so two threads calling predict on ONE model at once overwrite each other's
// activations. A model is therefore not safe to share between threads, even for
// inference. One copy per thread is: copies share nothing (every tensor is owned),
// and nothing else predict touches is shared (see "Using a model from several
// threads" in docs/reliability.md for what core/parallel.hpp guarantees about the
// thread count).
//
// How: the model is written to the model-file bytes in memory and read back
// (io/model_file.hpp), so the copy is exactly what save_model + load_model would give:
// the same architecture, hyperparameters, weights and layer state (e.g. running
// statistics), bit for bit. Not copied: gradients (zero in the copy), the model's
// random generator (the copy's is seeded with 1: only dropout in training mode reads
// it) and any optimizer state, which lives in the optimizer. The cost is one
// serialisation, about the time of writing the model file, without touching the disk;
// clone once per thread, not per call. A model outside the model file's limits
// (io/model_file.hpp: kMaxLayers, kMaxValuesPerSample) cannot be cloned either and
// throws ModelFileError, as save + load would; a model holding a layer type that is not
// registered (layers/registry.hpp) throws UnregisteredLayerError, naming it.
#pragma once

#include "kitnn/io/model_file.hpp"
#include "kitnn/model/sequential.hpp"

namespace kitnn {

// An independent deep copy of `model` (bit-identical weights and state), to give each
// thread its own. `model` is only read (its parameters are not changed); it is a
// non-const reference because Sequential's parameter accessors are non-const.
template <class T>
Sequential<T> clone_model(Sequential<T>& model) {
    return deserialize_model<T>(serialize_model(model), "clone_model (in memory)");
}

}  // namespace kitnn
