// The head-wise recurrent weights as the step loops read them: packed panels for the register
// tiles (forward h W_hh^T and backward dG W_hh) and per-head matrices for the BLAS steps.
// Part of the fused sLSTM kernel: see slstm_fused.cpp for the overview and the legend.
//
// w_hh is stored head-wise, (4H, dh): row g·H + u is unit u's gate g and its dh columns multiply
// h[head(u)·dh : head(u)·dh + dh]. Nothing here expands it to the dense block-diagonal (4H, H):
// a tile over a block of units (forward) or of h's columns (backward) reads only the inputs of
// the heads that block touches, so its product is the head's own (plus, where a block straddles
// two heads, zeros for the other head's units).
#pragma once

#include "slstm_cell.h"

namespace lstmkit {
namespace slstm {
namespace {

// Panels over blocks of width units: block u covers units [u·width, …) and reads the inputs
// [k0[u], k0[u] + K[u]) (the heads those units belong to). Panel u is (rows, cols) at
// data + u · stride, zero-padded past H and where a unit and an input are in different heads.
template <typename T>
struct Panels {
  Tensor data;
  std::vector<int64_t> k0, K;
  int64_t kmax = 0, stride = 0;
  const T* panel(int64_t u) const { return data.data_ptr<T>() + u * stride; }
};

// Inputs [k0, k0 + K) of the heads that units [j0, j1) belong to.
inline std::pair<int64_t, int64_t> head_inputs(int64_t j0, int64_t j1, int64_t dh) {
  const int64_t k0 = (j0 / dh) * dh, k1 = ((j1 - 1) / dh + 1) * dh;
  return {k0, k1 - k0};
}

// The weight from input i to unit u of gate g, 0 across heads.
template <typename T>
inline T weight(const T* w, int64_t H, int64_t dh, int64_t g, int64_t u, int64_t i) {
  return u / dh == i / dh ? w[(g * H + u) * dh + i % dh] : T(0);
}

// Forward: W_hh^T as gate_tile's panels (see tiles.h pack_whh, the dense case), blocks of L units:
// panel row kk = input k0 + kk, [gate 0's L units, gate 1's, …].
template <typename T>
Panels<T> pack_forward(const Tensor& w_hh, int64_t H) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t dh = w_hh.size(1), NU = (H + L - 1) / L;
  Panels<T> p;
  for (int64_t u = 0; u < NU; ++u) {
    auto [k0, K] = head_inputs(u * L, std::min(H, (u + 1) * L), dh);
    p.k0.push_back(k0), p.K.push_back(K), p.kmax = std::max(p.kmax, K);
  }
  p.stride = p.kmax * 4 * L;
  p.data = at::zeros({NU, p.kmax, 4 * L}, w_hh.options());
  const T* w = w_hh.data_ptr<T>();
  T* pk = p.data.template data_ptr<T>();
  at::parallel_for(0, NU, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u)
      for (int64_t kk = 0; kk < p.K[u]; ++kk)
        for (int64_t g = 0; g < 4; ++g)
          for (int64_t l = 0; l < L && u * L + l < H; ++l)
            pk[u * p.stride + (kk * 4 + g) * L + l] = weight(w, H, dh, g, u * L + l, p.k0[u] + kk);
  });
  return p;
}

// Backward: W_hh (4H, H) by blocks of kColVecs·L columns of h: panel row g·K + kk = gate g's unit
// k0 + kk (a column of dG), its kColVecs·L weights to the block's columns.
constexpr int kColVecs = 4;

template <typename T>
Panels<T> pack_backward(const Tensor& w_hh, int64_t H) {
  constexpr int64_t W = kColVecs * Vec<T>::size();
  const int64_t dh = w_hh.size(1), NU = (H + W - 1) / W;
  Panels<T> p;
  for (int64_t u = 0; u < NU; ++u) {
    auto [k0, K] = head_inputs(u * W, std::min(H, (u + 1) * W), dh);
    p.k0.push_back(k0), p.K.push_back(K), p.kmax = std::max(p.kmax, K);
  }
  p.stride = 4 * p.kmax * W;
  p.data = at::zeros({NU, 4 * p.kmax, W}, w_hh.options());
  const T* w = w_hh.data_ptr<T>();
  T* pk = p.data.template data_ptr<T>();
  at::parallel_for(0, NU, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u)
      for (int64_t g = 0; g < 4; ++g)
        for (int64_t kk = 0; kk < p.K[u]; ++kk)
          for (int64_t q = 0; q < W && u * W + q < H; ++q)
            pk[u * p.stride + (g * p.K[u] + kk) * W + q] = weight(w, H, dh, g, p.k0[u] + kk, u * W + q);
  });
  return p;
}

// C (B, H) = A (B, 4H) · W_hh on the backward panels: each thread a range of column blocks, R × kColVecs
// register tiles, one gate_tile per gate (its K inputs are contiguous within a gate).
template <typename T>
void backward_product(int64_t B, int64_t H, const T* A, const Panels<T>& p, T* C) {
  using V = Vec<T>;
  constexpr int64_t L = V::size(), W = kColVecs * L;
  const int64_t NU = static_cast<int64_t>(p.K.size());
  auto rows = [&](auto mr, int64_t b, int64_t u) {
    constexpr int R = decltype(mr)::value;
    const int64_t K = p.K[u];
    V acc[R][kColVecs], part[R][kColVecs];
    for (int64_t g = 0; g < 4; ++g) {
      gate_tile<R, kColVecs>(A + b * 4 * H + g * H + p.k0[u], 4 * H, p.panel(u) + g * K * W, K, g == 0 ? acc : part);
      if (g > 0)
        for (int r = 0; r < R; ++r)
          for (int q = 0; q < kColVecs; ++q) acc[r][q] = acc[r][q] + part[r][q];
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < kColVecs; ++q) {
        const int64_t c0 = u * W + q * L, n = std::min(L, H - c0);
        if (n > 0) store(acc[r][q], C + (b + r) * H + c0, n);
      }
  };
  at::parallel_for(0, NU, tile_grain(B, W, 4 * p.kmax), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) for_row_tiles(B, [&](auto mr, int64_t b) { rows(mr, b, u); });
  });
}

// The BLAS steps' weights, one dense matrix per head (NH = H / dh):
//   forward  (NH, dh, 4dh): head k's W_hh^T, column g·dh + u = gate g of its unit u;
//   backward (NH, 4dh, dh): head k's W_hh, row g·dh + u.
// With one head these are W_hh^T (H, 4H) and W_hh itself, and the steps need no gather or scatter.
inline Tensor per_head_forward(const Tensor& w_hh, int64_t H) {
  const int64_t dh = w_hh.size(1), NH = H / dh;
  return w_hh.reshape({4, NH, dh, dh}).permute({1, 3, 0, 2}).reshape({NH, dh, 4 * dh}).contiguous();
}

inline Tensor per_head_backward(const Tensor& w_hh, int64_t H) {
  const int64_t dh = w_hh.size(1), NH = H / dh;
  return w_hh.reshape({4, NH, dh, dh}).permute({1, 0, 2, 3}).reshape({NH, 4 * dh, dh}).contiguous();
}

// R (B, 4H) = h (B, H) W_hh^T by heads; tmp: (B, 4dh) scratch when NH > 1.
template <typename T>
void forward_product_blas(int64_t B, int64_t H, int64_t dh, const T* h, const T* wf, T* R, T* tmp) {
  const int64_t NH = H / dh;
  if (NH == 1) return step_gemm<T>(B, 4 * H, H, h, H, wf, R, /*accumulate=*/false);
  for (int64_t k = 0; k < NH; ++k) {
    step_gemm<T>(B, 4 * dh, dh, h + k * dh, H, wf + k * dh * 4 * dh, tmp, /*accumulate=*/false);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < 4; ++g)
        std::memcpy(R + b * 4 * H + g * H + k * dh, tmp + (b * 4 + g) * dh, sizeof(T) * dh);
  }
}

// C (B, H) = A (B, 4H) W_hh by heads; tmp: (B, 4dh + dh) scratch when NH > 1.
template <typename T>
void backward_product_blas(int64_t B, int64_t H, int64_t dh, const T* A, const T* wb, T* C, T* tmp) {
  const int64_t NH = H / dh;
  if (NH == 1) return step_gemm<T>(B, H, 4 * H, A, 4 * H, wb, C, /*accumulate=*/false);
  T* a = tmp;
  T* c = tmp + B * 4 * dh;
  for (int64_t k = 0; k < NH; ++k) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < 4; ++g)
        std::memcpy(a + (b * 4 + g) * dh, A + b * 4 * H + g * H + k * dh, sizeof(T) * dh);
    step_gemm<T>(B, dh, 4 * dh, a, 4 * dh, wb + k * 4 * dh * dh, c, /*accumulate=*/false);
    for (int64_t b = 0; b < B; ++b) std::memcpy(C + b * H + k * dh, c + b * dh, sizeof(T) * dh);
  }
}

}  // namespace
}  // namespace slstm
}  // namespace lstmkit
