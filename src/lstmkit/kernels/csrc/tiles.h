// Register tiles: packed weight layouts and the tiled products (and the test knobs that force them).
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "cell.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// The tiled step (forward without LayerNorm, whose row statistics need whole rows). One parallel
// region per step; each thread owns a contiguous range of unit blocks (L = vector width hidden
// units, all NG gates) and computes, for MR batch rows at a time, the recurrent product of those
// rows and units in MR × NG vector registers, adds it into G[t] and runs the cell on it while
// the row is still in L1. That is one fork/join per step instead of a BLAS region plus a gate
// pass, no round trip of G[t] through memory between them, and W_hh^T packed once per call into
// panels (see pack_whh) that each thread keeps in its own L2 across steps, the blocking oneDNN's
// brgemm RNN uses. Measured against MKL sgemm + the row-split gate pass on S1–S4's recurrences
// (2 threads, this machine): 1.2–1.7x faster.

// W_hh^T (P, GH) as unit-block panels: panel u is (P, NG·L) with row k = [gate 0 units uL..uL+L,
// gate 1 ..., ...], so one k step of a tile loads NG vectors. The last block is zero-padded.
template <typename scalar_t>
Tensor pack_whh(const Tensor& whh_t, int64_t NG) {
  constexpr int64_t L = Vec<scalar_t>::size();
  const int64_t P = whh_t.size(0), GH = whh_t.size(1), H = GH / NG, NU = (H + L - 1) / L;
  Tensor packed = at::zeros({NU, P, NG * L}, whh_t.options());
  const scalar_t* w = whh_t.data_ptr<scalar_t>();
  scalar_t* pk = packed.data_ptr<scalar_t>();
  at::parallel_for(0, NU, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = std::min(L, H - u * L);
      for (int64_t kk = 0; kk < P; ++kk)
        for (int64_t gi = 0; gi < NG; ++gi)
          std::memcpy(pk + (u * P + kk) * NG * L + gi * L, w + kk * GH + gi * H + u * L, sizeof(scalar_t) * n);
    }
  });
  return packed;
}

// out[r][gi] = Σ_k x[r][k] · xpanel[k][gi] + Σ_k h[r][k] · panel[k][gi] for MR rows of x and h (ldx,
// ldh apart): MR·NG accumulators and NG panel vectors live in registers (MR = 3, NG = 4: 12 + 4 of
// AVX2's 16), one broadcast per row. Each accumulator is one chain of fused multiply-adds from zero,
// x's KX terms first, then h's K: a step's input projection and recurrent product in one pass, the
// pre-activations never stored between them (KX = 0: the recurrent product alone). The sums build
// in a local array copied to out at the end: accumulating into out itself (an array the caller reads
// afterwards) made GCC store every accumulator on each k step (NG = 3: the coupled step ran 1.8x
// slower than the row-split one).
template <int MR, int NG, typename scalar_t>
inline void gate_tile_xh(const scalar_t* x, int64_t ldx, const scalar_t* xpanel, int64_t KX, const scalar_t* h,
                         int64_t ldh, const scalar_t* panel, int64_t K, Vec<scalar_t> (&out)[MR][NG]) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size();
  V acc[MR][NG];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int gi = 0; gi < NG; ++gi) acc[r][gi] = V(scalar_t(0));
  auto run = [&](const scalar_t* a, int64_t lda, const scalar_t* pn, int64_t n) {
    for (int64_t kk = 0; kk < n; ++kk) {
      const scalar_t* pr = pn + kk * NG * L;
      V w[NG];
#pragma GCC unroll 4
      for (int gi = 0; gi < NG; ++gi) w[gi] = V::loadu(pr + gi * L);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        const V av(a[r * lda + kk]);
#pragma GCC unroll 4
        for (int gi = 0; gi < NG; ++gi) acc[r][gi] = at::vec::fmadd(av, w[gi], acc[r][gi]);
      }
    }
  };
  run(x, ldx, xpanel, KX);
  run(h, ldh, panel, K);
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int gi = 0; gi < NG; ++gi) out[r][gi] = acc[r][gi];
}

// ---------------------------------------------------------------------------------------------
// The same product 8 rows at a time in AVX-512 registers, where the CPU has them. A panel row of
// 4 gates × 8 units is two zmm vectors, so 8 rows make 16 accumulators (of 32 registers) per 2
// panel loads and 8 broadcasts. Each sum is built exactly as gate_tile builds it (one fused
// multiply-add per k, in k order, from zero), so the results are bit for bit the AVX2 tiles': only
// the speed changes. The rest of the kernel stays AVX2; this function alone is compiled for
// AVX-512 (a target attribute) and is chosen at run time, so the library still runs on CPUs
// without it. Measured on the product of one S1 step (32 × 256 by 256 × 1024, one thread):
// 113 GFLOP/s against 92 for the 3-row AVX2 tile; blocking K for L1 made it slower (97–103).
#if defined(CPU_CAPABILITY_AVX2) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LSTMKIT_AVX512_TILES 1
__attribute__((target("avx512f"), noinline)) void tile8x4_avx512(const float* x, int64_t ldx, const float* xpanel,
                                                                 int64_t KX, const float* h, int64_t ldh,
                                                                 const float* panel, int64_t K,
                                                                 float* out /* 8 × 32 */) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int src = 0; src < 2; ++src) {  // x's terms, then h's
    const float* a = src == 0 ? x : h;
    const float* pn = src == 0 ? xpanel : panel;
    const int64_t lda = src == 0 ? ldx : ldh, n = src == 0 ? KX : K;
    for (int64_t kk = 0; kk < n; ++kk) {
      const __m512 w0 = _mm512_loadu_ps(pn + kk * 32), w1 = _mm512_loadu_ps(pn + kk * 32 + 16);
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
        acc[r][0] = _mm512_fmadd_ps(av, w0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, w1, acc[r][1]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) _mm512_storeu_ps(out + r * 32, acc[r][0]), _mm512_storeu_ps(out + r * 32 + 16, acc[r][1]);
}
#endif

// Test knob (set_avx512 below): 0 auto (when the CPU has AVX-512F), -1 never.
std::atomic<int> g_avx512{0};

inline bool avx512_tiles() {
#ifdef LSTMKIT_AVX512_TILES
  static const bool has = __builtin_cpu_supports("avx512f");
  return has && g_avx512.load(std::memory_order_relaxed) >= 0;
#else
  return false;
#endif
}

// gate_tile_xh for 8 rows of float32 with 4 gates, on the AVX-512 tile (for_row_tiles only asks for
// it when avx512_tiles()).
template <>
inline void gate_tile_xh<8, 4, float>(const float* x, int64_t ldx, const float* xpanel, int64_t KX, const float* h,
                                      int64_t ldh, const float* panel, int64_t K, Vec<float> (&out)[8][4]) {
#ifdef LSTMKIT_AVX512_TILES
  alignas(64) float buf[8 * 32];
  tile8x4_avx512(x, ldx, xpanel, KX, h, ldh, panel, K, buf);
  for (int r = 0; r < 8; ++r)
    for (int gi = 0; gi < 4; ++gi) out[r][gi] = Vec<float>::loadu(buf + r * 32 + gi * 8);
#else
  TORCH_CHECK(false, "lstmkit: the AVX-512 tile is not in this build");
#endif
}

// The recurrent product alone: out[r][gi] = Σ_k h[r][k] · panel[k][gi].
template <int MR, int NG, typename scalar_t>
inline void gate_tile(const scalar_t* h, int64_t ldh, const scalar_t* panel, int64_t K, Vec<scalar_t> (&out)[MR][NG]) {
  gate_tile_xh<MR, NG, scalar_t>(nullptr, 0, nullptr, 0, h, ldh, panel, K, out);
}

// Test knob (set_tiled below): 0 auto, 1 always, -1 never.
std::atomic<int> g_tiled{0};

// Whether steps use the tiled product. Auto: float32 with AVX2 (measured there) and at least one
// full tile of rows. With B < 3 a tile has too few independent accumulators to hide the FMA
// latency, and per-block overhead shows: S5 (B = 1) runs 1.26 ms on the row-split step against
// 1.47 ms tiled. LayerNorm uses register tiles for the product h W_hh^T only (cols_product), since
// its row statistics need whole rows before any cell can run; backward uses them for dG[t] W_hh.
//
// The forward's rule does not depend on the steps, so no-grad outputs stay bit for bit the
// training forward's; inference takes its packed W_hh^T from fused.py's cache (one-step decoding,
// T = 1, B = 5, H = 512: 443 µs tiled against 686 µs untiled; torch.nn.LSTM 397 µs), recording
// packs per call. Backward packs per call and tiles from kBackwardMinSteps steps: below that
// the packing costs more than the tiles save.
constexpr int64_t kBackwardMinSteps = 4;

// Rows (steps × batch) per chunk of backward's step gradients (see lstm_backward); test knob
// set_backward_chunk, 0 for this default.
constexpr int64_t kBackwardChunkRows = 1024;
std::atomic<int64_t> g_backward_chunk_rows{0};
// With B < 3 the forward still tiles once W_hh holds kTiledWeightsAnyBatch entries or more:
// weights that size leave L2 between steps, so every step streams them from L3, and the packed
// panels stream contiguously where the row-split step's BLAS GEMV strides (one-step decoding,
// 256 → 512, CPU time per call: B = 1 725 → 474 µs, B = 2 883 → 322 µs). S5's 64 × 256 stays
// row-split. Backward keeps B >= 3 (whh_entries 0).
constexpr int64_t kTiledWeightsAnyBatch = int64_t(1) << 17;
template <typename scalar_t>
inline bool use_tiled(int64_t B, int64_t whh_entries = 0) {
  const int mode = g_tiled.load(std::memory_order_relaxed);
  if (mode != 0) return mode > 0;
#if defined(CPU_CAPABILITY_AVX2)
  return std::is_same_v<scalar_t, float> && (B >= 3 || whh_entries >= kTiledWeightsAnyBatch);
#else
  return false;
#endif
}

// use_tiled for a forward of x (T, B, ·) over a W_hh of whh_entries entries, on x's dtype.
inline bool forward_tiles(const Tensor& x, int64_t whh_entries) {
  bool on = false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_tiles", [&] { on = use_tiled<scalar_t>(x.size(1), whh_entries); });
  return on;
}

// Unit blocks per thread chunk of a tiled step: below ~32k multiply-adds a step runs on one
// thread (S5: the fork/join would cost more than the step).
inline int64_t tile_grain(int64_t B, int64_t panel_width, int64_t P) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, B * panel_width * P));
}

// Calls f(std::integral_constant<int, R>{}, b) for the row tiles [b, b + R) of rows [from, B): R = 3
// (kTileRows) while they last, then one tile of the 1 or 2 rows left.
constexpr int kTileRows = 3;
template <typename F>
inline void for_row_tiles(int64_t B, F&& f, int64_t from = 0) {
  int64_t b = from;
  for (; b + kTileRows <= B; b += kTileRows) f(std::integral_constant<int, kTileRows>{}, b);
  if (B - b == 2) f(std::integral_constant<int, 2>{}, b);
  if (B - b == 1) f(std::integral_constant<int, 1>{}, b);
}

// Rows of the widest register tile for panels of NG gates of scalar_t: 8 for float32 with 4 gates
// on AVX-512 (gate_tile<8, 4, float>), else kTileRows.
template <typename scalar_t, int NG>
inline int64_t widest_tile_rows() {
  return std::is_same_v<scalar_t, float> && NG == 4 && avx512_tiles() ? 8 : kTileRows;
}

// The same for panels of NG gates of scalar_t (pack_whh, pack_cols): tiles of widest_tile_rows
// while they last first. (sLSTM's per-gate panels keep the plain form above.)
template <typename scalar_t, int NG, typename F>
inline void for_row_tiles(int64_t B, F&& f) {
  int64_t b = 0;
  if constexpr (std::is_same_v<scalar_t, float> && NG == 4) {
    if (widest_tile_rows<scalar_t, NG>() == 8)
      for (; b + 8 <= B; b += 8) f(std::integral_constant<int, 8>{}, b);
  }
  for_row_tiles(B, std::forward<F>(f), b);
}

// Test knob (set_row_split below): 0 auto, 1 wherever possible (also at one thread, where the
// parts run one after another), -1 never.
std::atomic<int> g_row_split{0};
// For tests: how many forward and backward loops ran as row parts so far.
std::atomic<int64_t> g_row_split_runs{0};

// How many parts a tiled forward splits its batch rows into, one per thread, each running every
// step of its rows over all hidden units (1: each step's unit blocks are split instead, with a
// fork/join per step). A row's h_t needs only its own h_{t-1}, so row parts never wait for each
// other; they read all of W_ih and W_hh every step where unit blocks read their share, which the
// tiles' FMA rate hides while the weights stay in L3. Every entry is the same chain of
// multiply-adds either way, so the results are bit for bit the same. Auto: two or more threads
// outside a parallel region (the stack's concurrent layers already own one thread each), at
// least one full register tile of rows per part, packed weights (weight_entries of them read per
// step) of at most kRowSplitMaxWeightBytes, and no projection (whose h W_hr^T after each step
// needs all units of a row). Measured at two threads against the unit split (kernel_ab.py --knob
// row_split): S3 training 1.12x, inference 1.07x; S1 1.03x / 1.01x; S2 (8 MB) 1.01x / 0.99x;
// S4 (32 MB) inference 0.93x.
constexpr int64_t kRowSplitMaxWeightBytes = int64_t(4) << 20;
template <typename scalar_t, int NG>
inline int64_t row_parts(int64_t B, bool proj, int64_t weight_entries) {
  const int mode = g_row_split.load(std::memory_order_relaxed);
  if (mode < 0 || proj || at::in_parallel_region()) return 1;
  const int64_t threads = at::get_num_threads();
  if (mode > 0) return std::min<int64_t>(B, std::max<int64_t>(2, threads));
  if (weight_entries * int64_t(sizeof(scalar_t)) > kRowSplitMaxWeightBytes) return 1;
  const int64_t parts = std::min<int64_t>(threads, B / widest_tile_rows<scalar_t, NG>());
  return parts >= 2 ? parts : 1;
}

// Runs f(r0, r1) for each of the parts row parts of B rows (row_parts > 1), one per thread, each
// ceil(B / parts) rows; a part past the batch (B = 25 over 8 parts leaves the last ones none) runs
// nothing.
template <typename F>
void for_row_parts(int64_t B, int64_t parts, F&& f) {
  const int64_t per = (B + parts - 1) / parts;
  g_row_split_runs.fetch_add(1, std::memory_order_relaxed);
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * per, r1 = std::min(B, r0 + per);
      if (r0 < r1) f(r0, r1);
    }
  });
}

// M (K, N) row-major as panels of NG·L columns (the layout gate_tile reads): panel u is (K, NG·L),
// zero-padded past N.
template <typename scalar_t, int NG>
Tensor pack_cols(const Tensor& m) {
  constexpr int64_t W = NG * Vec<scalar_t>::size();
  const int64_t K = m.size(0), N = m.size(1), NU = (N + W - 1) / W;
  Tensor packed = at::zeros({NU, K, W}, m.options());
  const scalar_t* src = m.data_ptr<scalar_t>();
  scalar_t* pk = packed.data_ptr<scalar_t>();
  at::parallel_for(0, NU, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = std::min(W, N - u * W);
      for (int64_t kk = 0; kk < K; ++kk) std::memcpy(pk + (u * K + kk) * W, src + kk * N + u * W, sizeof(scalar_t) * n);
    }
  });
  return packed;
}

// C (B, N) = A (B, K; rows lda apart) M, with M packed by pack_cols: each thread a range of
// column panels, MR × NG register tiles. Backward's per-step dG[t] W_hh (K = 4H) measured
// 1.2–1.7x faster than MKL's sgemm at S1–S3 (2 threads), as the forward's product was. Also
// LayerNorm's h W_hh^T (M = W_hh^T, N = GH), normalized per row afterwards.
template <typename scalar_t, int NG>
void cols_product(int64_t B, int64_t N, int64_t K, const scalar_t* A, int64_t lda, const scalar_t* pk, scalar_t* C) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size(), W = NG * L;
  const int64_t NU = (N + W - 1) / W;
  auto rows = [&](auto mr, int64_t b, int64_t u) {
    constexpr int RR = decltype(mr)::value;
    V acc[RR][NG];
    gate_tile<RR, NG>(A + b * lda, lda, pk + u * K * W, K, acc);
    for (int r = 0; r < RR; ++r)
      for (int q = 0; q < NG; ++q) {
        const int64_t c0 = u * W + q * L, n = std::min(L, N - c0);
        if (n > 0) acc[r][q].store(C + (b + r) * N + c0, n);
      }
  };
  at::parallel_for(0, NU, tile_grain(B, W, K), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) for_row_tiles<scalar_t, NG>(B, [&](auto mr, int64_t b) { rows(mr, b, u); });
  });
}

// C (rows, NG·H) = A (rows, K; rows lda apart) W^T, with W^T (K, NG·H) packed by pack_whh: each
// thread a range of unit blocks, MR × NG register tiles, every entry the same chain of multiply-adds
// as cols_product's. The input projection of the steps that cannot take it into their own tiles
// (LayerNorm normalizes it as a whole row first), from the one packed W_ih^T the fused steps read.
template <typename scalar_t, int NG>
void gates_product(int64_t rows, int64_t H, int64_t K, const scalar_t* A, int64_t lda, const scalar_t* pk,
                   scalar_t* C) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size(), W = NG * L;
  const int64_t NU = (H + L - 1) / L;
  at::parallel_for(0, NU, tile_grain(rows, W, K), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t j = u * L, n = std::min(L, H - j);
      for_row_tiles<scalar_t, NG>(rows, [&](auto mr, int64_t b) {
        constexpr int RR = decltype(mr)::value;
        V acc[RR][NG];
        gate_tile<RR, NG>(A + b * lda, lda, pk + u * K * W, K, acc);
        for (int r = 0; r < RR; ++r)
          for (int gi = 0; gi < NG; ++gi) acc[r][gi].store(C + (b + r) * NG * H + gi * H + j, n);
      });
    }
  });
}

}  // namespace
}  // namespace lstmkit
