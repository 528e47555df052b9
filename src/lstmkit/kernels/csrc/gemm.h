// GEMM: BLAS on raw pointers (or ATen), and the per-step product with a loop for tiny sizes.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "common.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// GEMM. Per-step products are small, so dispatcher and TensorImpl overhead per call matters
// (S3: 200 steps × 2 GEMMs). When libtorch exports the Fortran BLAS symbols (MKL builds do),
// call them on raw pointers; otherwise fall back to ATen on from_blob views. Tiny products
// (streaming, B = 1) use a plain loop the compiler vectorizes.

using sgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                          const float*, const int*, const float*, const int*, const float*, float*,
                          const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                          const double*, const int*, const double*, const int*, const double*, double*,
                          const int*);

struct Blas {
  sgemm_fn sgemm = nullptr;
  dgemm_fn dgemm = nullptr;
  Blas() {
    sgemm = reinterpret_cast<sgemm_fn>(dlsym(RTLD_DEFAULT, "sgemm_"));
    dgemm = reinterpret_cast<dgemm_fn>(dlsym(RTLD_DEFAULT, "dgemm_"));
  }
};

const Blas& blas() {
  static Blas b;
  return b;
}

// Test knobs (see set_gemm_mode below): tests force each GEMM path on tiny shapes.
std::atomic<bool> g_use_blas{true};

// Row-major C (m×n, ldc) = alpha · op(A) · op(B) + beta · C, with op(A) m×k and op(B) k×n.
// Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ, hence the swapped operands.
template <typename scalar_t>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, scalar_t alpha, const scalar_t* A,
          int64_t lda, const scalar_t* Bm, int64_t ldb, scalar_t beta, scalar_t* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == scalar_t(0) ? scalar_t(0) : beta * C[i * ldc + j];
    return;
  }
  const char tA = ta ? 'T' : 'N', tB = tb ? 'T' : 'N';
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int LDA = static_cast<int>(lda), LDB = static_cast<int>(ldb), LDC = static_cast<int>(ldc);
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (blas().sgemm && g_use_blas.load(std::memory_order_relaxed)) {
      blas().sgemm(&tB, &tA, &N, &M, &K, &alpha, Bm, &LDB, A, &LDA, &beta, C, &LDC);
      return;
    }
  } else {
    if (blas().dgemm && g_use_blas.load(std::memory_order_relaxed)) {
      blas().dgemm(&tB, &tA, &N, &M, &K, &alpha, Bm, &LDB, A, &LDA, &beta, C, &LDC);
      return;
    }
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  Tensor a = ta ? at::from_blob(const_cast<scalar_t*>(A), {k, m}, {lda, 1}, opts).t()
                : at::from_blob(const_cast<scalar_t*>(A), {m, k}, {lda, 1}, opts);
  Tensor b = tb ? at::from_blob(const_cast<scalar_t*>(Bm), {n, k}, {ldb, 1}, opts).t()
                : at::from_blob(const_cast<scalar_t*>(Bm), {k, n}, {ldb, 1}, opts);
  Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  if (beta == scalar_t(0)) {
    c.copy_(at::mm(a, b).mul_(alpha));
  } else {
    c.addmm_(a, b, beta, alpha);
  }
}

// Below this many multiply-adds a plain loop beats a BLAS call (measured: S5, B=1, 64×256).
constexpr int64_t kSmallGemmDefault = 1 << 15;
std::atomic<int64_t> g_small_gemm{kSmallGemmDefault};

// Per-step product C (m×n) = [C +] A (m×k, lda) · M (k×n), C and M row-major and dense.
template <typename scalar_t>
void step_gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, int64_t lda, const scalar_t* M,
               scalar_t* C, bool accumulate) {
  const int64_t ldm = n, ldc = n;
  if (m * n * k <= g_small_gemm.load(std::memory_order_relaxed)) {
    // Register-blocked: a block of 4 vectors of C stays in registers over all k, so the loop is
    // bound by the loads of M, not by a store of C per multiply-add (measured: S5's step 1.8 ->
    // ~1.2 µs).
    using Vs = at::vec::Vectorized<scalar_t>;
    constexpr int64_t VW = Vs::size();
    for (int64_t r = 0; r < m; ++r) {
      scalar_t* c = C + r * ldc;
      const scalar_t* a = A + r * lda;
      int64_t j = 0;
      for (; j + 4 * VW <= n; j += 4 * VW) {
        Vs c0(scalar_t(0)), c1(scalar_t(0)), c2(scalar_t(0)), c3(scalar_t(0));
        if (accumulate) {
          c0 = Vs::loadu(c + j), c1 = Vs::loadu(c + j + VW), c2 = Vs::loadu(c + j + 2 * VW);
          c3 = Vs::loadu(c + j + 3 * VW);
        }
        for (int64_t p = 0; p < k; ++p) {
          const Vs ap(a[p]);
          const scalar_t* mr = M + p * ldm + j;
          c0 = at::vec::fmadd(ap, Vs::loadu(mr), c0);
          c1 = at::vec::fmadd(ap, Vs::loadu(mr + VW), c1);
          c2 = at::vec::fmadd(ap, Vs::loadu(mr + 2 * VW), c2);
          c3 = at::vec::fmadd(ap, Vs::loadu(mr + 3 * VW), c3);
        }
        c0.store(c + j), c1.store(c + j + VW), c2.store(c + j + 2 * VW), c3.store(c + j + 3 * VW);
      }
      for (; j + VW <= n; j += VW) {
        Vs c0 = accumulate ? Vs::loadu(c + j) : Vs(scalar_t(0));
        for (int64_t p = 0; p < k; ++p) c0 = at::vec::fmadd(Vs(a[p]), Vs::loadu(M + p * ldm + j), c0);
        c0.store(c + j);
      }
      for (; j < n; ++j) {
        scalar_t acc = accumulate ? c[j] : scalar_t(0);
        for (int64_t p = 0; p < k; ++p) acc += a[p] * M[p * ldm + j];
        c[j] = acc;
      }
    }
    return;
  }
  gemm<scalar_t>(false, false, m, n, k, scalar_t(1), A, lda, M, ldm, accumulate ? scalar_t(1) : scalar_t(0), C, ldc);
}

}  // namespace
}  // namespace lstmkit
