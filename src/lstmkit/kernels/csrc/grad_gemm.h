// The backward's chunk products on the register tiles: the input gradient dX = dG W_ih and the
// weight gradients dW += dGᵀ X and dGᵀ h_{t-1}.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
//
// At small sizes MKL's sgemm spends a third of these products packing its operands (S3: N = 32
// input features, 128 hidden units); the tiles read W_ih in column panels packed once per call and
// each chunk's X or h rows packed once. Every entry is one chain of fused multiply-adds in row
// order (a weight gradient's continuing from its running value, chunk after chunk) whatever the
// thread count, so the gradients do not depend on how many threads ran them.
// Measured against MKL (kernel_ab.py --knob grad_tiles), training at two threads: S3 1.03–1.10x,
// S8 1.04–1.05x, S1, S6 and S7 0.98–1.03x; at one thread S3 1.08x, S7 1.03x, S1 1.01x.
#pragma once

#include "tiles.h"

namespace lstmkit {
namespace {

// Test knob (set_grad_tiles below): 0 auto (where the steps tile), -1 never (BLAS): the A/B of
// benchmarks/kernel_ab.py --knob grad_tiles. The two round differently.
std::atomic<int> g_grad_tiles{0};

// Rows of C per work item: 64 rows by one column panel, the items split across threads.
constexpr int64_t kGradRowBlock = 64;

// Calls f(m0, rows, u) for every work item of a (M, N) result: its rows [m0, m0 + rows) by column
// panel u, the items split across threads.
template <typename scalar_t, typename F>
void for_grad_items(int64_t M, int64_t N, F&& f) {
  constexpr int64_t W = 4 * Vec<scalar_t>::size();
  const int64_t NU = (N + W - 1) / W, MB = (M + kGradRowBlock - 1) / kGradRowBlock;
  at::parallel_for(0, MB * NU, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t m0 = (i / NU) * kGradRowBlock;
      f(m0, std::min(kGradRowBlock, M - m0), i % NU);
    }
  });
}

// A tile's RR rows (ldc apart) of columns [c0, c0 + 4·L) into C, those below N.
template <int RR, typename scalar_t>
inline void store_tile(const Vec<scalar_t> (&acc)[RR][4], scalar_t* C, int64_t ldc, int64_t c0, int64_t N) {
  constexpr int64_t L = Vec<scalar_t>::size();
  for (int rr = 0; rr < RR; ++rr)
    for (int q = 0; q < 4; ++q) {
      const int64_t c = c0 + q * L, n = std::min(L, N - c);
      if (n > 0) acc[rr][q].store(C + rr * ldc + c, n);
    }
}

// C (M, N; ldc) = A (M, K; lda) · B, with B (K, N) packed by pack_cols<scalar_t, 4>.
template <typename scalar_t>
void tiled_mm(int64_t M, int64_t N, int64_t K, const scalar_t* A, int64_t lda, const scalar_t* Bp, scalar_t* C,
              int64_t ldc) {
  using V = Vec<scalar_t>;
  constexpr int64_t W = 4 * V::size();
  for_grad_items<scalar_t>(M, N, [&](int64_t m0, int64_t rows, int64_t u) {
    for_row_tiles<scalar_t, 4>(rows, [&](auto mr, int64_t r) {
      constexpr int RR = decltype(mr)::value;
      V acc[RR][4];
      gate_tile<RR, 4>(A + (m0 + r) * lda, lda, Bp + u * K * W, K, acc);
      store_tile<RR>(acc, C + (m0 + r) * ldc, ldc, u * W, N);
    });
  });
}

// acc[r][q] += Σ_k A[k][r] · panel[k][q·L…] over K rows, in k order: MR columns of A (lda apart
// row to row) against one packed panel of B, continuing each entry's chain from acc.
template <int MR, typename scalar_t>
inline void atb_tile(const scalar_t* A, int64_t lda, const scalar_t* panel, int64_t K, Vec<scalar_t> (&acc)[MR][4]) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size();
  V a_[MR][4];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) a_[r][q] = acc[r][q];
  for (int64_t kk = 0; kk < K; ++kk) {
    const scalar_t* pr = panel + kk * 4 * L;
    const scalar_t* ar = A + kk * lda;
    V w[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) w[q] = V::loadu(pr + q * L);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const V av(ar[r]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) a_[r][q] = at::vec::fmadd(av, w[q], a_[r][q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[r][q] = a_[r][q];
}

#ifdef LSTMKIT_AVX512_TILES
// atb_tile for 8 columns of float32 in zmm registers (16 accumulators), each chain built exactly as
// the AVX2 form builds it, reading and writing its 8 × ncols block of C (ldc apart) itself: a round
// trip through AVX2 registers would reload each zmm from two ymm stores, which the CPU cannot forward.
__attribute__((target("avx512f"), noinline)) void atb8x32_avx512(const float* A, int64_t lda, const float* panel,
                                                                 int64_t K, float* C, int64_t ldc, int64_t ncols) {
  const __mmask16 m0 = ncols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << ncols) - 1);
  const __mmask16 m1 = ncols >= 32 ? __mmask16(0xFFFF) : ncols <= 16 ? __mmask16(0) : __mmask16((1u << (ncols - 16)) - 1);
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r)
    acc[r][0] = _mm512_maskz_loadu_ps(m0, C + r * ldc), acc[r][1] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
  for (int64_t kk = 0; kk < K; ++kk) {
    const __m512 w0 = _mm512_loadu_ps(panel + kk * 32), w1 = _mm512_loadu_ps(panel + kk * 32 + 16);
    const float* ar = A + kk * lda;
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r]);
      acc[r][0] = _mm512_fmadd_ps(av, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, w1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r)
    _mm512_mask_storeu_ps(C + r * ldc, m0, acc[r][0]), _mm512_mask_storeu_ps(C + r * ldc + 16, m1, acc[r][1]);
}
#endif

// C (M, N; ldc) += Aᵀ B over K rows: A (K, M; lda), B (K, N) packed by pack_cols<scalar_t, 4>. The
// weight gradients: M = the gate rows of W, K = a chunk's (step, batch) rows. (Walking K in blocks
// that a row block's tiles share in L1 measured slower at S1: 0.94–0.99x.)
template <typename scalar_t>
void tiled_atb(int64_t M, int64_t N, int64_t K, const scalar_t* A, int64_t lda, const scalar_t* Bp, scalar_t* C,
               int64_t ldc) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size(), W = 4 * L;
  for_grad_items<scalar_t>(M, N, [&](int64_t m0, int64_t rows, int64_t u) {
    const scalar_t* panel = Bp + u * K * W;
    for_row_tiles<scalar_t, 4>(rows, [&](auto mr, int64_t r) {
      constexpr int RR = decltype(mr)::value;
#ifdef LSTMKIT_AVX512_TILES
      if constexpr (std::is_same_v<scalar_t, float> && RR == 8) {
        atb8x32_avx512(A + m0 + r, lda, panel, K, C + (m0 + r) * ldc + u * W, ldc, std::min(W, N - u * W));
        return;
      }
#endif
      V acc[RR][4];
      for (int rr = 0; rr < RR; ++rr)
        for (int q = 0; q < 4; ++q) {
          const int64_t c0 = u * W + q * L, n = std::min(L, N - c0);
          acc[rr][q] = n > 0 ? V::loadu(C + (m0 + r + rr) * ldc + c0, n) : V(scalar_t(0));
        }
      atb_tile<RR>(A + m0 + r, lda, panel, K, acc);
      store_tile<RR>(acc, C + (m0 + r) * ldc, ldc, u * W, N);
    });
  });
}

}  // namespace
}  // namespace lstmkit
