// Vector maths: activations on at::vec, row helpers, lanes (vector body + scalar tail).
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "gemm.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// Elementwise helpers, vectorized with at::vec (AVX2 when built with it; scalar otherwise).

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;

// σ(x) = 1 / (1 + e^-x); in float32 tanh(x) = 1 - 2 / (1 + e^2x). float32 takes e^x from
// at::vec's inlined polynomial exp_u20 (≤ 20 ulp, ~1e-6 relative; differences to torch.nn.LSTM
// stay below 1e-6 at S1): against Sleef's calls it made S1/S3 inference 1.2-1.3x faster here.
// float64 keeps Sleef's 1-ulp exp and tanh, so it can be compared to the reference at 1e-10.
template <typename scalar_t>
inline Vec<scalar_t> vexp(const Vec<scalar_t>& x) {
  if constexpr (std::is_same_v<scalar_t, float>) return x.exp_u20();
  return x.exp();
}

template <typename scalar_t>
inline Vec<scalar_t> vsigmoid(const Vec<scalar_t>& x) {
  const Vec<scalar_t> one(scalar_t(1));
  return one / (one + vexp(x.neg()));
}

template <typename scalar_t>
inline Vec<scalar_t> vtanh(const Vec<scalar_t>& x) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    const Vec<scalar_t> one(scalar_t(1)), two(scalar_t(2));
    return one - two / (one + (x * two).exp_u20());
  }
  return x.tanh();
}

template <typename scalar_t>
inline scalar_t ssigmoid(scalar_t x) {
  return scalar_t(1) / (scalar_t(1) + std::exp(-x));
}

// Rows per parallel chunk of a row pass: ~2k elements, a few µs of gate maths, which pays for
// waking a thread (at 16k, S3's 16 rows of 512 gates ran on one thread: LayerNorm training 2.1x
// plain instead of 1.6x).
inline int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(1, width)); }

inline bool row_active(const int64_t* len, int64_t b, int64_t t) { return len == nullptr || t < len[b]; }

// The step a row starts from, and hence where h0/c0 enter: 0 forward, its last step in reverse.
inline int64_t row_start(const int64_t* len, int64_t b, int64_t T, bool reverse) {
  if (!reverse) return 0;
  return (len ? len[b] : T) - 1;
}

// The element-wise maths is written once, for V = Vec<scalar_t> (the vector body) and for
// V = scalar_t (the tail).
template <typename V, typename S>
inline V ld(const S* p) {
  if constexpr (std::is_same_v<V, S>) return *p; else return V::loadu(p);
}
template <typename S>
inline void st(const Vec<S>& v, S* p) { v.store(p); }
inline void st(float v, float* p) { *p = v; }
inline void st(double v, double* p) { *p = v; }
template <typename S>
inline Vec<S> sgm(const Vec<S>& x) { return vsigmoid(x); }
inline float sgm(float x) { return ssigmoid(x); }
inline double sgm(double x) { return ssigmoid(x); }
template <typename S>
inline Vec<S> tnh(const Vec<S>& x) { return vtanh(x); }
inline float tnh(float x) { return std::tanh(x); }
inline double tnh(double x) { return std::tanh(x); }

// Calls f(tag, j) over [j0, j1): tag is a Vec<S> for the vector body and an S for the tail, so
// one generic lambda (with ld / st / tnh above) serves both.
template <typename S, typename F>
inline void for_lanes(int64_t j0, int64_t j1, F&& f) {
  constexpr int64_t V = Vec<S>::size();
  int64_t j = j0;
  for (; j + V <= j1; j += V) f(Vec<S>(), j);
  for (; j < j1; ++j) f(S(0), j);
}

template <typename S, typename F>
inline void for_lanes(int64_t n, F&& f) {
  for_lanes<S>(0, n, std::forward<F>(f));
}

// The cell passes over hidden units [j0, j1): f(tag, variants, j) as for_lanes, with variants a
// std::integral_constant<bool, !plain> chosen once per call, so the plain cell is its own
// instantiation without the variants' branches (cell_forward / cell_backward's VAR).
template <typename S, typename F>
inline void for_units(bool plain, int64_t j0, int64_t j1, F&& f) {
  if (plain) {
    for_lanes<S>(j0, j1, [&](auto tag, int64_t j) { f(tag, std::false_type{}, j); });
  } else {
    for_lanes<S>(j0, j1, [&](auto tag, int64_t j) { f(tag, std::true_type{}, j); });
  }
}

template <typename S>
inline S hsum(const Vec<S>& v) {
  S buf[Vec<S>::size()];
  v.store(buf);
  S s = 0;
  for (int64_t q = 0; q < Vec<S>::size(); ++q) s += buf[q];
  return s;
}

// A running sum fed by for_lanes: vector lanes and the scalar tail each add to their own part.
template <typename S>
struct LaneSum {
  Vec<S> v{S(0)};
  S s{0};
  void add(const Vec<S>& x) { v = v + x; }
  void add(S x) { s += x; }
  S total() const { return hsum(v) + s; }
};

}  // namespace
}  // namespace lstmkit
