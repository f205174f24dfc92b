// A small, fast, seedable random number generator for `cellcube synth`: SplitMix64
// (one 64-bit state word, so a generator per cell costs nothing to seed) and the
// few distributions the generator needs. Deterministic on every platform: no
// <random> distributions, whose output differs between standard libraries.
#pragma once

#include <cmath>
#include <cstdint>

namespace cellcube::synth {

// Mixes a 64-bit value into a well-spread one (SplitMix64's finaliser).
constexpr uint64_t MixBits(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A seed derived from a parent seed and up to three labels: independent streams for
// (dataset, purpose, item) without sharing one generator.
constexpr uint64_t SubSeed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t h = MixBits(seed + 0x9e3779b97f4a7c15ULL);
  h = MixBits(h ^ (a + 0x632be59bd9b4e019ULL));
  h = MixBits(h ^ (b + 0x8cb92ba72f3d8dd7ULL));
  return MixBits(h ^ (c + 0x52dce729da3ed9b1ULL));
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t Next() { return MixBits(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in the open interval (0, 1).
  double Uniform() {
    return (static_cast<double>(static_cast<int64_t>(Next() >> 11)) + 0.5) * 0x1.0p-53;
  }
  // Uniform integer in [0, n).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Standard normal (Box-Muller).
  double Normal() {
    double r = std::sqrt(-2.0 * std::log(Uniform()));
    return r * std::cos(6.283185307179586 * Uniform());
  }
  double Normal(double mean, double sd) { return mean + sd * Normal(); }
  // exp(N(0, sd)): a multiplicative noise factor with median 1.
  double LogNormal(double sd) { return std::exp(sd * Normal()); }

 private:
  uint64_t state_;
};

}  // namespace cellcube::synth
