// kitnn/core/rng.hpp — a small, fast, seedable random generator (xoshiro256**).
//
// std::uniform_real_distribution / std::normal_distribution are implementation-
// defined, so the same seed could give other weights with another standard
// library. We derive every draw ourselves: one seed -> the same numbers anywhere.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace kitnn {

class Rng {
public:
    explicit Rng(std::uint64_t seed = 1) { reseed(seed); }

    void reseed(std::uint64_t seed) {
        // splitmix64 expands the seed into the 256-bit state (never all zero).
        for (auto& s : state_) {
            seed += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            s = z ^ (z >> 31);
        }
        has_spare_ = false;
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n) (Lemire's multiply-shift; bias < 2^-64 * n).
    std::uint64_t below(std::uint64_t n) {
        return std::uint64_t((static_cast<unsigned __int128>(next()) * n) >> 64);
    }
    // Standard normal (Box–Muller, caching the second value).
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1 = 0;
        while (u1 <= 0) u1 = uniform();
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(6.283185307179586 * u2);
        has_spare_ = true;
        return r * std::cos(6.283185307179586 * u2);
    }

    // A child generator for an independent stream (e.g. one per layer).
    Rng split() { return Rng(next()); }

    const std::array<std::uint64_t, 4>& state() const { return state_; }
    void set_state(const std::array<std::uint64_t, 4>& s) {
        state_ = s;
        has_spare_ = false;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::array<std::uint64_t, 4> state_{};
    double spare_ = 0;
    bool has_spare_ = false;
};

}  // namespace kitnn
