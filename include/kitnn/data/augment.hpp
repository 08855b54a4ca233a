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
// Elastic distortion (Simard, Steinkraus and Platt 2003, "Best practices for
// convolutional neural networks applied to visual document analysis"), optional:
// the wobble of a hand rather than a rigid move. Every image draws two fields of
// independent U(-1, 1) values, one per axis, smooths them with a Gaussian of
// standard deviation elastic_sigma pixels (normalised kernel, zero outside the
// frame) and scales them by elastic pixels; the sampled point becomes
//   q = A p + b + d(p),         d(p) = elastic * (G_sigma * U)(p)
// i.e. each output pixel is displaced by a smooth random vector field on top of
// the affine map, in the same single resampling pass. A large sigma gives nearly
// rigid shifts; a small one, noise. Simard's 34 pixels at sigma 4 moves a pixel by
// about 1.4 px (standard deviation of each component).
//
// Determinism: the parameters of every image (and the seed of its elastic field)
// are drawn serially from one Rng the caller seeds per batch (fit() seeds it from
// seed, epoch and step); only the fields and the resampling run in parallel, each
// image from its own draws, so the result does not depend on the thread count.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/core/rng.hpp"
#include "kitnn/core/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

struct AugmentOptions {
    double shift = 0;   // max shift in pixels (x and y independently)
    double rotate = 0;  // max rotation in degrees
    double scale = 0;   // max relative size change (0.1 = 90 % .. 110 %)
    double elastic = 0;        // elastic distortion: scale of the field in pixels (0 = off)
    double elastic_sigma = 4;  // its smoothness: the Gaussian's standard deviation in pixels

    bool enabled() const { return shift > 0 || rotate > 0 || scale > 0 || elastic > 0; }
    void validate() const {
        if (!(shift >= 0 && shift <= 64) || !(rotate >= 0 && rotate <= 180) ||
            !(scale >= 0 && scale < 1))
            throw std::invalid_argument(
                "augmentation: need 0 <= shift <= 64 pixels, 0 <= rotate <= 180 degrees, "
                "0 <= scale < 1");
        if (!(elastic >= 0 && elastic <= 200) || !(elastic_sigma >= 0.5 && elastic_sigma <= 16))
            throw std::invalid_argument(
                "augmentation: need 0 <= elastic <= 200 pixels and 0.5 <= elastic_sigma <= 16 "
                "pixels");
    }
    // "shift=2,rotate=10,scale=0.1,elastic=34,elastic_sigma=4" (any subset; "none" =
    // all zero)
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
            double* field = key == "shift"           ? &a.shift
                            : key == "rotate"        ? &a.rotate
                            : key == "scale"         ? &a.scale
                            : key == "elastic"       ? &a.elastic
                            : key == "elastic_sigma" ? &a.elastic_sigma
                                                     : nullptr;
            if (!ok || !field)
                throw std::invalid_argument(
                    "augmentation: cannot read '" + item +
                    "' (expected e.g. shift=2,rotate=10,scale=0.1,elastic=34,elastic_sigma=4 or none)");
            *field = v;
            pos = end + 1;
        }
        a.validate();
        return a;
    }
    std::string str() const {
        if (!enabled()) return "none";
        std::ostringstream s;
        s << "shift=" << shift << ",rotate=" << rotate << ",scale=" << scale;
        if (elastic > 0) s << ",elastic=" << elastic << ",elastic_sigma=" << elastic_sigma;
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
    std::vector<T> out;                  // (N, C, H, W) the resampled batch
    std::vector<AffineMap> maps;         // (N) one map per image
    std::vector<std::uint64_t> seeds;    // (N) the seed of each image's elastic field
    std::vector<T> kernel;               // (2r + 1) the normalised Gaussian
};

namespace detail {
// One image's elastic displacement field (2, H, W): U(-1, 1) noise drawn from
// rng, smoothed by the separable Gaussian kernel k (radius r) with zeros outside
// the frame, times alpha. scratch: resized to (H + 2r) * (W + 2r) + H * (W + 2r)
// values (the padded noise, then the vertically smoothed rows).
template <class T>
void elastic_field(Rng& rng, const std::vector<T>& k, T alpha, Eigen::Index H, Eigen::Index W,
                   T* field, std::vector<T>& scratch) {
    const Eigen::Index r = (Eigen::Index(k.size()) - 1) / 2, Wp = W + 2 * r, Hp = H + 2 * r;
    scratch.assign(size_t(Hp * Wp + H * Wp), T(0));
    T* noise = scratch.data();       // (H + 2r, W + 2r) the noise, zero-padded on every side
    T* rows = noise + Hp * Wp;       // (H, W + 2r) after the vertical pass
    for (int axis = 0; axis < 2; ++axis) {
        for (Eigen::Index i = 0; i < H; ++i)
            for (Eigen::Index j = 0; j < W; ++j)
                noise[(i + r) * Wp + j + r] = T(rng.uniform(-1, 1));
        // Vertical pass, vectorised along the row: rows[i] = sum_t k[t] noise[i + t].
        for (Eigen::Index i = 0; i < H; ++i) {
            T* out = rows + i * Wp;
            std::fill(out, out + Wp, T(0));
            for (Eigen::Index t = 0; t < 2 * r + 1; ++t) {
                const T w = k[size_t(t)];
                const T* in = noise + (i + t) * Wp;
                for (Eigen::Index j = 0; j < Wp; ++j) out[j] += w * in[j];
            }
        }
        // Horizontal pass, vectorised along the row too: f[i][j] = alpha * sum_t
        // k[t] rows[i][j + t] (alpha folded into the taps).
        T* f = field + axis * H * W;
        for (Eigen::Index i = 0; i < H; ++i) {
            T* out = f + i * W;
            std::fill(out, out + W, T(0));
            for (Eigen::Index t = 0; t < 2 * r + 1; ++t) {
                const T w = alpha * k[size_t(t)];
                const T* in = rows + i * Wp + t;
                for (Eigen::Index j = 0; j < W; ++j) out[j] += w * in[j];
            }
        }
    }
}
}  // namespace detail

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
    // The elastic fields' seeds, drawn after all the maps (so that a spec without
    // elastic draws exactly what it drew before the option existed); each field is
    // then generated in parallel from its own seed.
    const bool elastic = o.elastic > 0;
    Eigen::Index radius = 0;
    if (elastic) {
        buf.seeds.resize(size_t(N));
        for (auto& sd : buf.seeds) sd = rng.next();
        radius = Eigen::Index(std::ceil(3 * o.elastic_sigma));
        buf.kernel.resize(size_t(2 * radius + 1));
        double total = 0;
        for (Eigen::Index t = -radius; t <= radius; ++t)
            total += std::exp(-0.5 * double(t * t) / (o.elastic_sigma * o.elastic_sigma));
        for (Eigen::Index t = -radius; t <= radius; ++t)
            buf.kernel[size_t(t + radius)] =
                T(std::exp(-0.5 * double(t * t) / (o.elastic_sigma * o.elastic_sigma)) / total);
    }
    tmp.resize(size_t(x.size()));
    T* out = tmp.data();
    const std::int64_t per_image = C * plane * 12 + (elastic ? 4 * (2 * radius + 1) * plane : 0);
    parallel_for(N, N * per_image, [&](std::int64_t n) {
        const AffineMap& m = maps[size_t(n)];
        // This image's elastic displacement (2, H, W), x then y: made and used by one
        // thread, so its buffers are the thread's own.
        T* field = nullptr;
        if (elastic) {
            thread_local std::vector<T> scratch, displacement;
            displacement.resize(size_t(2 * plane));
            field = displacement.data();
            Rng g(buf.seeds[size_t(n)]);
            detail::elastic_field(g, buf.kernel, T(o.elastic), H, W, field, scratch);
        }
        for (Eigen::Index c = 0; c < C; ++c) {
            const T* src = x.data() + (n * C + c) * plane;
            T* dst = out + (n * C + c) * plane;
            for (Eigen::Index i = 0; i < H; ++i)
                for (Eigen::Index j = 0; j < W; ++j) {
                    double qx = m.a00 * double(j) + m.a01 * double(i) + m.bx;
                    double qy = m.a10 * double(j) + m.a11 * double(i) + m.by;
                    if (field) {
                        qx += double(field[i * W + j]);
                        qy += double(field[plane + i * W + j]);
                    }
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
