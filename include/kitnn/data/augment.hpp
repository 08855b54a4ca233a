// kitnn/data/augment.hpp — on-the-fly image augmentation for training batches.
//
// Each image of a batch gets its own random affine map about the image centre:
//   rotation  theta ~ U(-rotate, +rotate) degrees
//   scaling   s     ~ U(1 - scale, 1 + scale)
//   shift     t     ~ U(-shift, +shift) pixels, in x and in y
// and is resampled with bilinear interpolation (zero outside the image, which is
// MNIST's black background). Output pixel p takes the input at
//   q = R(-theta) (p - c - t) / s + c,      c = ((W-1)/2, (H-1)/2)
// i.e. the inverse map, so every output pixel is written exactly once.
//
// Why these three: MNIST digits are already size-normalised and centred by centre
// of mass, so the variations a test digit shows against the training set are a
// pixel or two of offset, a few degrees of slant and a few percent of size. Small
// random versions of exactly those make the network invariant to them without
// changing which digit it is (no flips: a mirrored 2 is not a 2).
//
// Determinism: the parameters of every image are drawn serially from one Rng the
// caller seeds per batch (fit() seeds it from seed, epoch and step), and only the
// resampling runs in parallel, so the result does not depend on the thread count.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/core/rng.hpp"
#include "kitnn/core/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

struct AugmentOptions {
    double shift = 0;   // max shift in pixels (x and y independently)
    double rotate = 0;  // max rotation in degrees
    double scale = 0;   // max relative size change (0.1 = 90 % .. 110 %)

    bool enabled() const { return shift > 0 || rotate > 0 || scale > 0; }
    void validate() const {
        if (!(shift >= 0 && shift <= 64) || !(rotate >= 0 && rotate <= 180) ||
            !(scale >= 0 && scale < 1))
            throw std::invalid_argument(
                "augmentation: need 0 <= shift <= 64 pixels, 0 <= rotate <= 180 degrees, "
                "0 <= scale < 1");
    }
    // "shift=2,rotate=10,scale=0.1" (any subset; "none" = all zero)
    static AugmentOptions parse(const std::string& spec) {
        AugmentOptions a;
        if (spec.empty() || spec == "none") return a;
        size_t pos = 0;
        while (pos <= spec.size()) {
            const size_t end = std::min(spec.find(',', pos), spec.size());
            const std::string item = spec.substr(pos, end - pos);
            const size_t eq = item.find('=');
            const std::string key = item.substr(0, eq);
            double v = 0;
            bool ok = eq != std::string::npos;
            if (ok) try {
                    size_t used = 0;
                    v = std::stod(item.substr(eq + 1), &used);
                    ok = used == item.size() - eq - 1;
                } catch (const std::exception&) {
                    ok = false;
                }
            if (!ok || (key != "shift" && key != "rotate" && key != "scale"))
                throw std::invalid_argument("augmentation: cannot read '" + item +
                                            "' (expected e.g. shift=2,rotate=10,scale=0.1 or none)");
            (key == "shift" ? a.shift : key == "rotate" ? a.rotate : a.scale) = v;
            pos = end + 1;
        }
        a.validate();
        return a;
    }
    std::string str() const {
        if (!enabled()) return "none";
        std::ostringstream s;
        s << "shift=" << shift << ",rotate=" << rotate << ",scale=" << scale;
        return s.str();
    }
};

// The inverse map of one image as a 2x3 affine matrix: q = A p + b.
struct AffineMap {
    double a00, a01, a10, a11, bx, by;
};

// Reusable buffers of augment_batch: sized on the first batch, then no allocation.
template <class T>
struct AugmentBuffers {
    std::vector<T> out;          // (N, C, H, W) the resampled batch
    std::vector<AffineMap> maps;  // (N) one map per image
};

// Augments every image of x (N, C, H, W) in place.
template <class T>
void augment_batch(Tensor<T>& x, const AugmentOptions& o, Rng& rng, AugmentBuffers<T>& buf) {
    if (!o.enabled()) return;
    const Eigen::Index N = x.dimension(0), C = x.dimension(1), H = x.dimension(2),
                       W = x.dimension(3), plane = H * W;
    auto& maps = buf.maps;
    auto& tmp = buf.out;
    maps.resize(static_cast<size_t>(N));
    const double cx = double(W - 1) / 2, cy = double(H - 1) / 2, pi = 3.141592653589793;
    for (auto& m : maps) {
        const double th = rng.uniform(-o.rotate, o.rotate) * pi / 180;
        const double s = rng.uniform(1 - o.scale, 1 + o.scale);
        const double tx = rng.uniform(-o.shift, o.shift), ty = rng.uniform(-o.shift, o.shift);
        const double c = std::cos(th) / s, sn = std::sin(th) / s;
        // q = R(-th)/s (p - c - t) + c
        m.a00 = c, m.a01 = sn, m.a10 = -sn, m.a11 = c;
        const double px = -cx - tx, py = -cy - ty;
        m.bx = c * px + sn * py + cx;
        m.by = -sn * px + c * py + cy;
    }
    tmp.resize(size_t(x.size()));
    T* out = tmp.data();
    parallel_for(N, N * C * plane * 12, [&](std::int64_t n) {
        const AffineMap& m = maps[size_t(n)];
        for (Eigen::Index c = 0; c < C; ++c) {
            const T* src = x.data() + (n * C + c) * plane;
            T* dst = out + (n * C + c) * plane;
            for (Eigen::Index i = 0; i < H; ++i)
                for (Eigen::Index j = 0; j < W; ++j) {
                    const double qx = m.a00 * double(j) + m.a01 * double(i) + m.bx;
                    const double qy = m.a10 * double(j) + m.a11 * double(i) + m.by;
                    const double fx = std::floor(qx), fy = std::floor(qy);
                    const Eigen::Index x0 = Eigen::Index(fx), y0 = Eigen::Index(fy);
                    const T wx = T(qx - fx), wy = T(qy - fy);
                    // The four neighbours, each zero when outside the image.
                    auto at = [&](Eigen::Index yy, Eigen::Index xx) {
                        return (yy >= 0 && yy < H && xx >= 0 && xx < W) ? src[yy * W + xx] : T(0);
                    };
                    if (x0 < -1 || x0 >= W || y0 < -1 || y0 >= H) {
                        dst[i * W + j] = T(0);
                        continue;
                    }
                    dst[i * W + j] = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
                                     wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1));
                }
        }
    });
    std::copy(tmp.begin(), tmp.begin() + std::ptrdiff_t(x.size()), x.data());
}

}  // namespace kitnn
