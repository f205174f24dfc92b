// exp and log for the generator's inner loop: inline, accurate to ~1e-10 relative
// (plenty for sampling), and the same bits on every platform and libm version, so a
// seed gives the same files everywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace cellcube::synth {

// e^x for x in [-708, 709]; 0 below, +inf above.
inline double FastExp(double x) {
  if (x < -708.0) return 0.0;
  if (x > 709.0) return HUGE_VAL;
  constexpr double kLn2Hi = 0.6931471803691238;  // ln 2 split in two for an exact k * ln 2
  constexpr double kLn2Lo = 1.9082149292705877e-10;
  // Round to nearest by truncation (inline, unlike std::nearbyint on baseline x86-64).
  const double t = x * 1.4426950408889634;
  const auto ki = static_cast<int64_t>(t < 0 ? t - 0.5 : t + 0.5);
  const auto k = static_cast<double>(ki);
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;  // |r| <= 0.35
  // Taylor series of e^r to degree 8 (relative error < 3e-10 for |r| <= 0.35).
  double p = 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // Scale by 2^k in two steps so that subnormal results stay correct enough.
  const int64_t half = ki / 2;
  auto pow2 = [](int64_t e) {
    uint64_t bits = static_cast<uint64_t>(e + 1023) << 52;
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  };
  return p * pow2(half) * pow2(ki - half);
}

// ln x for finite x > 0.
inline double FastLog(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
  if (e == -1023) return std::log(x);  // subnormal: rare, let libm do it
  bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double m;
  std::memcpy(&m, &bits, sizeof m);  // m in [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
  const double s = (m - 1) / (m + 1);
  const double s2 = s * s;
  double p = 1.0 / 11;
  p = p * s2 + 1.0 / 9;
  p = p * s2 + 1.0 / 7;
  p = p * s2 + 1.0 / 5;
  p = p * s2 + 1.0 / 3;
  p = p * s2 + 1.0;
  return static_cast<double>(e) * 0.6931471805599453 + 2 * s * p;
}

// ln(1 + y) for y >= 0, accurate for tiny y too.
inline double FastLog1p(double y) {
  if (y < 1e-4) return y * (1 - y * (0.5 - y * (1.0 / 3 - y * 0.25)));
  return FastLog(1 + y);
}

}  // namespace cellcube::synth
