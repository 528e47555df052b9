// The fused CPU LSTM kernel: one layer, one direction, forward and hand-written backward
// through time. Bound to Python by lstmkit/kernels/fused.py (torch.autograd.Function).
//
// Shape legend: T = steps, B = batch, I = input features, H = hidden size (cell and gates),
// P = size of h (proj_size if > 0, else H), G = gates (4; 3 for the coupled variant). All buffers
// are time-major and contiguous; gates are packed (T, B, GH) in torch's order i, f, g, o
// (coupled: i, g, o). The variants (peephole, coupled, recurrent dropout, zoneout) are
// described where they are implemented, above cell_forward.
//
// Equations (the table of docs/explanation/lstm.md, code letters):
//   [i f g o]_t = act(X_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)   act = σ, σ, tanh, σ
//   c_t = f ⊙ c_{t-1} + i ⊙ g
//   h_t = o ⊙ tanh(c_t)            (then h_t W_hr^T when projecting)
//
// Forward: the input projection is one product per chunk of ~512 rows of steps into G (on the
// register tiles over a packed W_ih^T where the steps tile, else a BLAS GEMM); per step
// the recurrent product h_{t-1} W_hh^T is added into G[t] and a fused pass adds the biases and
// applies the activations in place, so G ends up holding the activated gates: exactly what
// backward needs and what return_gates returns. C keeps every cell state. The step is either
// tiled (float32 on AVX2: each thread computes the product of its hidden units in registers
// and runs their cells on it, see forward_loop_tiled) or a BLAS GEMM followed by a row-split
// gate pass (forward_loop: float64, other CPUs; LayerNorm tiles the product, then normalizes). The inference entry (lstm_infer)
// runs the same loops without recording, on one reused chunk of G, and keeps no C.
//
// Backward: in reverse, a fused pass (split by rows) turns dh_t, dc_t into the pre-activation
// gradients dG[t] (T, B, 4H), and one product per step gives dh_{t-1} = dG[t] W_hh (register
// tiles over packed W_hh panels where the forward tiles, else BLAS). After each chunk of
// kBackwardChunkRows rows of steps, the chunk's weight, bias and input gradients are GEMMs and
// its buffers are reused (see lstm_backward). (Fusing the cell backward into that
// product's tiles, as the forward does, measured slower: S1 training 78.6 vs 70.3 ms, S3 17.4
// vs 15.6; so did a column split with one BLAS call per thread, since removed.)
//
// Lengths (right-padded batches): a row is active at step t when t < length. Inactive rows
// keep their state, and their outputs, gates and cell states are zero; in reverse a row starts
// at its own last step. This is the reference backend's contract, bit for bit in the masks.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <type_traits>
#include <utility>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

using at::Tensor;
using c10::optional;

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

// ---------------------------------------------------------------------------------------------
// The variants (see reference.lstm_cell_step, the readable twin). Each is off when its pointer
// is null; all masks are sampled by the module and arrive as contiguous tensors.
//   coupled (CIFG): G = 3 gates packed i|g|o, f = 1 - i.
//   peephole: pre_i += p_i ⊙ c_{t-1}, pre_f += p_f ⊙ c_{t-1}, pre_o += p_o ⊙ c̃_t (rows i, f, o;
//     coupled: i, o).
//   recurrent dropout: the recurrent GEMM reads h_{t-1} ⊙ h_keep (B, P), one mask per sequence.
//   zoneout: c_t = lerp(c̃_t, c_{t-1}, z_c[t]), h_t = lerp(h̃_t, h_{t-1}, z_h[t]); h̃_t is
//     computed from c̃_t (the cell value before zoneout), C keeps c_t (the carried state).
//   LayerNorm: over all GH features of a row, the input projection LN(x W_ih^T)·w_ih' + b_ih'
//     (one pass over all steps before the loop, forward_impl) and inside the loop the recurrent
//     projection LN(h W_hh^T)·w_hh' + b_hh' (then b_ih + b_hh as always), and c̃_t before its
//     tanh: h̃_t = o ⊙ tanh(LN(c̃_t)·w_c + b_c).
//     Recording forward keeps the normalized values and 1/σ per row, which is what backward
//     needs. (A caller may instead pass the input projection as x, without w_ih and w_ih'.)

// A zoneout mask (T, B, n), read one step's (B, n) block at a time. It arrives as floats (masks
// injected by tests and callers), as bool (the module's training samples: a quarter of the
// bytes, and no float copy is made of them; each step's block is widened into a small scratch),
// or as a stride-0 expansion of one rate (eval mode: the scratch is filled once, nothing
// (T, B, n) is ever materialized).
template <typename S>
struct Mask {
  const S* f = nullptr;        // float (T, B, n)
  const uint8_t* u = nullptr;  // bool (T, B, n)
  S* scratch = nullptr;        // (B, n): the widened block, or the constant rate
  int64_t block = 0;           // B * n
  bool constant = false;
  explicit operator bool() const { return f != nullptr || u != nullptr || constant; }
  // Step t's (B, n) block. Call once per step from serial code: it may rewrite the scratch.
  const S* step(int64_t t) const {
    if (f) return f + t * block;
    if (constant) return scratch;
    const uint8_t* src = u + t * block;
    for (int64_t q = 0; q < block; ++q) scratch[q] = src[q] ? S(1) : S(0);
    return scratch;
  }
};

inline bool is_constant_mask(const Tensor& m) {
  if (!m.defined() || m.numel() == 0) return false;
  for (int64_t d = 0; d < m.dim(); ++d)
    if (m.stride(d) != 0 && m.size(d) != 1) return false;
  return true;
}

// The scratch a mask needs (see Mask), or undefined for a plain float mask.
inline Tensor mask_scratch(const Tensor& m, int64_t B, int64_t n, const Tensor& x) {
  if (!m.defined()) return Tensor();
  if (m.scalar_type() == at::kBool) return at::empty({B, n}, x.options());
  if (is_constant_mask(m)) return at::full({B, n}, m.reshape({-1})[0].item(), x.options());
  return Tensor();
}

template <typename S>
Mask<S> make_mask(const Tensor& m, const Tensor& scratch, int64_t B, int64_t n) {
  Mask<S> k;
  if (!m.defined()) return k;
  k.block = B * n;
  k.scratch = scratch.defined() ? scratch.data_ptr<S>() : nullptr;
  if (m.scalar_type() == at::kBool) {
    k.u = reinterpret_cast<const uint8_t*>(m.data_ptr<bool>());
  } else if (is_constant_mask(m)) {
    k.constant = true;
  } else {
    k.f = m.data_ptr<S>();
  }
  return k;
}

template <typename scalar_t>
struct Variants {
  bool coupled = false;
  const scalar_t* peep = nullptr;    // (3, H) or (2, H) coupled
  const scalar_t* h_keep = nullptr;  // (B, P)
  Mask<scalar_t> zone_h;             // (T, B, P)
  Mask<scalar_t> zone_c;             // (T, B, H)
  const scalar_t *ln_hw = nullptr, *ln_hb = nullptr;  // (GH,) LayerNorm of the recurrent projection
  const scalar_t *ln_cw = nullptr, *ln_cb = nullptr;  // (H,) LayerNorm of c̃ before its tanh
  double eps = 1e-5;
};

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

// The statistics of LayerNorm over one row, n = (z - mean) · r with r = 1 / sqrt(var + eps)
// (biased variance, as F.layer_norm). Two passes (mean, then squared deviations) for accuracy;
// the caller writes n in the same pass that uses it.
template <typename S>
struct LnMoments {
  S mean, r;
};

template <typename S>
inline LnMoments<S> ln_moments(const S* z, int64_t n, double eps) {
  LaneSum<S> sum, sq;
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    sum.add(ld<VV>(z + q));
  });
  const S mean = sum.total() / S(n);
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV d = ld<VV>(z + q) - VV(mean);
    sq.add(d * d);
  });
  return {mean, static_cast<S>(1.0 / std::sqrt(static_cast<double>(sq.total()) / n + eps))};
}

// The last pass of LN's backward (n = LN(z) given dn): dz = r · (dn - s1/N - n · s2/N), where
// s1 = Σ dn and s2 = Σ dn ⊙ n were summed by the pass that produced dn. dz may be dn.
template <typename S>
inline void ln_row_backward_finish(const S* dn, const S* nrm, S r, S s1, S s2, int64_t n, S* dz) {
  const S m1 = s1 / S(n), m2 = s2 / S(n);
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    st(VV(r) * (ld<VV>(dn + q) - VV(m1) - ld<VV>(nrm + q) * VV(m2)), dz + q);
  });
}

// Backward of y = LN(z)·w + b given dy = dg, in two passes over the row (the second on cached
// data): the first adds dg ⊙ LN(z) to the gain's gradient acc_w (and dg to acc_b when given) and
// sums dn = dg ⊙ w and dn ⊙ LN(z); the second writes dz. dz may be dg.
template <typename S>
inline void ln_affine_row_backward(const S* dg, const S* w, const S* nrm, S r, int64_t n, S* acc_w, S* acc_b, S* dz) {
  LaneSum<S> s1, s2;
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV dgv = ld<VV>(dg + q), nv = ld<VV>(nrm + q), dn = dgv * ld<VV>(w + q);
    st(ld<VV>(acc_w + q) + dgv * nv, acc_w + q);
    if (acc_b) st(ld<VV>(acc_b + q) + dgv, acc_b + q);
    s1.add(dn);
    s2.add(dn * nv);
  });
  const S m1 = s1.total() / S(n), m2 = s2.total() / S(n);
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV nv = ld<VV>(nrm + q), dn = ld<VV>(dg + q) * ld<VV>(w + q);
    st(VV(r) * (dn - VV(m1) - nv * VV(m2)), dz + q);
  });
}

// Column offsets of the gates in a packed row, and the peephole rows.
template <typename scalar_t>
struct Layout {
  int64_t H, GH, oi, of, og, oo;
  bool coupled, ln;
  const scalar_t *pi, *pf, *po;  // peephole rows, or null
  Layout(int64_t H_, const Variants<scalar_t>& v)
      : H(H_), GH((v.coupled ? 3 : 4) * H_), oi(0), of(v.coupled ? -1 : H_), og(v.coupled ? H_ : 2 * H_),
        oo(v.coupled ? 2 * H_ : 3 * H_), coupled(v.coupled), ln(v.ln_hw != nullptr),
        pi(v.peep), pf(v.peep && !v.coupled ? v.peep + H_ : nullptr),
        po(v.peep ? v.peep + (v.coupled ? H_ : 2 * H_) : nullptr) {}
};

// VAR = false compiles the plain LSTM: every variant branch folds away.
//
// One step of one row at columns [j, j + lanes): g holds the pre-activations and gets the
// activated gates; c holds c_{t-1} and gets c_t (also written to c_row, the step's record);
// h_dst gets h_t (h̃_t when projecting: zoneout of h then happens after the projection).
//
// REC = true records the step for backward and return_gates (activated gates into g, c_t into
// c_row); REC = false is inference: g is only read (o is still written back with LayerNorm,
// whose h̃ forward_loop finishes after the row's LN(c̃)), c_row is unused. bias (GH,), when
// not null, is b_ih + b_hh added here instead of by the input-projection GEMM: one pass over
// (T, B, GH) fewer (addmm first broadcasts the bias into its whole output).
template <typename V, bool VAR, bool REC, typename S>
inline void cell_forward(const Layout<S>& k, int64_t j, S* g, const S* bias, S* c, S* c_row, S* h_dst,
                         const S* zc, const S* zh, const S* hprev, S* ctl) {
  const V one(S(1));
  const V cp = ld<V>(c + j);
  V ip = ld<V>(g + k.oi + j);
  if (bias) ip = ip + ld<V>(bias + k.oi + j);
  if (VAR && k.pi) ip = ip + ld<V>(k.pi + j) * cp;
  const V i = sgm(ip);
  V f;
  if (VAR && k.coupled) {
    f = one - i;
  } else {
    V fp = ld<V>(g + k.of + j);
    if (bias) fp = fp + ld<V>(bias + k.of + j);
    if (VAR && k.pf) fp = fp + ld<V>(k.pf + j) * cp;
    f = sgm(fp);
    if (REC) st(f, g + k.of + j);
  }
  V gp = ld<V>(g + k.og + j);
  if (bias) gp = gp + ld<V>(bias + k.og + j);
  const V gg = tnh(gp);
  V cn = f * cp + i * gg;
  V op = ld<V>(g + k.oo + j);
  if (bias) op = op + ld<V>(bias + k.oo + j);
  if (VAR && k.po) op = op + ld<V>(k.po + j) * cn;
  const V o = sgm(op);
  if (REC) {
    st(i, g + k.oi + j);
    st(gg, g + k.og + j);
  }
  if (REC || (VAR && k.ln)) st(o, g + k.oo + j);
  if (VAR && k.ln) {  // h̃ needs LN(c̃) over the whole row first: forward_loop finishes it
    st(cn, ctl + j);
    if (zc) cn = cn + ld<V>(zc + j) * (cp - cn);
    st(cn, c + j);
    if (REC) st(cn, c_row + j);
    return;
  }
  V h = o * tnh(cn);
  if (VAR && zc) cn = cn + ld<V>(zc + j) * (cp - cn);
  if (VAR && zh) h = h + ld<V>(zh + j) * (ld<V>(hprev + j) - h);
  st(cn, c + j);
  if (REC) st(cn, c_row + j);
  st(h, h_dst + j);
}

// Backward of cell_forward for one row at [j, j + lanes). dhr: dL/dh̃_t (after zoneout's
// (1 - z_h) and the projection); dcr: in dL/dc_t (carried), out dL/dc_{t-1}. gg_, gc_: gradients
// of the recorded gates and cell states, or null. Writes the pre-activation gradients to dg,
// o ⊙ tanh(c̃) to hp when projecting, and c_{t-1}, c̃_t to cprev_out, ctil_out for the peephole
// weight gradients.
template <typename V, bool VAR, typename S>
inline void cell_backward(const Layout<S>& k, int64_t j, const S* g, const S* c, const S* cp, const S* dhr, S* dcr,
                          const S* gg_, const S* gc_, const S* zc, S* dg, S* hp, S* cprev_out, S* ctil_out,
                          const S* tco, const S* dcl) {
  const V one(S(1));
  const V i = ld<V>(g + k.oi + j), gv = ld<V>(g + k.og + j), o = ld<V>(g + k.oo + j);
  const V f = (VAR && k.coupled) ? one - i : ld<V>(g + k.of + j);
  const V cpv = ld<V>(cp + j);
  const V ct = (VAR && zc) ? f * cpv + i * gv : ld<V>(c + j);  // c̃_t: with zoneout C holds c_t, not c̃_t
  const bool ln = VAR && k.ln;  // then tco = tanh(LN(c̃)) and dcl = the h path's dL/dc̃ (ln_cell_backward)
  const V tc = ln ? ld<V>(tco + j) : tnh(ct);
  const V dhv = ld<V>(dhr + j);
  V dC = ld<V>(dcr + j);
  if (gc_) dC = dC + ld<V>(gc_ + j);
  V zv(S(0));
  if (VAR && zc) zv = ld<V>(zc + j);
  V dct = ((VAR && zc) ? dC * (one - zv) : dC) + (ln ? ld<V>(dcl + j) : dhv * o * (one - tc * tc));
  V dov = dhv * tc;
  if (gg_) dov = dov + ld<V>(gg_ + k.oo + j);
  const V dpo = dov * o * (one - o);
  if (VAR && k.po) dct = dct + ld<V>(k.po + j) * dpo;
  V di = dct * ((VAR && k.coupled) ? gv - cpv : gv);
  if (gg_) di = di + ld<V>(gg_ + k.oi + j);
  V dgg = dct * i;
  if (gg_) dgg = dgg + ld<V>(gg_ + k.og + j);
  const V dpi = di * i * (one - i);
  V dcp = dct * f;
  if (VAR && zc) dcp = dcp + dC * zv;
  if (VAR && k.pi) dcp = dcp + ld<V>(k.pi + j) * dpi;
  if (!(VAR && k.coupled)) {
    V df = dct * cpv;
    if (gg_) df = df + ld<V>(gg_ + k.of + j);
    const V dpf = df * f * (one - f);
    st(dpf, dg + k.of + j);
    if (VAR && k.pf) dcp = dcp + ld<V>(k.pf + j) * dpf;
  }
  st(dpi, dg + k.oi + j);
  st(dgg * (one - gv * gv), dg + k.og + j);
  st(dpo, dg + k.oo + j);
  st(dcp, dcr + j);
  if (hp) st(o * tc, hp + j);
  if (VAR && cprev_out) {
    st(cpv, cprev_out + j);
    st(ct, ctil_out + j);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

// h_{t-1} as the step's recurrent product reads it: with recurrent dropout only that product sees
// the masked h (written to hmask, n = B·P entries); otherwise h itself.
template <typename scalar_t>
inline const scalar_t* recurrent_input(const Variants<scalar_t>& var, const scalar_t* h, scalar_t* hmask, int64_t n) {
  if (!var.h_keep) return h;
  for (int64_t q = 0; q < n; ++q) hmask[q] = h[q] * var.h_keep[q];
  return hmask;
}

// The projection after a step's gate pass: h_t = hpre W_hr^T into the output row, then zoneout
// of the projected h (z_h lerps back to h_{t-1}), then h_t becomes the carried state hs. Inactive
// rows of hpre are zero, so their outputs are zero too, and their carried h is left as it was.
template <typename scalar_t>
void project_step(int64_t B, int64_t H, int64_t P, int64_t t, const int64_t* len, const scalar_t* hpre,
                  const scalar_t* whr_t, const scalar_t* zh_step, scalar_t* Ot, scalar_t* hs) {
  step_gemm<scalar_t>(B, P, H, hpre, H, whr_t, Ot, /*accumulate=*/false);  // h = hpre W_hr^T
  for (int64_t b = 0; b < B; ++b) {
    if (!row_active(len, b, t)) continue;
    scalar_t* o = Ot + b * P;
    if (zh_step) {
      const scalar_t* z = zh_step + b * P;
      const scalar_t* hp = hs + b * P;
      for (int64_t q = 0; q < P; ++q) o[q] = o[q] + z[q] * (hp[q] - o[q]);
    }
    std::memcpy(hs + b * P, o, sizeof(scalar_t) * P);
  }
}

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

// out[r][gi] = Σ_k h[r][k] · panel[k][gi] for MR rows of h (ldh apart): MR·NG accumulators and NG
// panel vectors live in registers (MR = 3, NG = 4: 12 + 4 of AVX2's 16), one broadcast per row.
// The sums build in a local array copied to out at the end: accumulating into out itself (an
// array the caller reads afterwards) made GCC store every accumulator on each k step (NG = 3:
// the coupled step ran 1.8x slower than the row-split one).
template <int MR, int NG, typename scalar_t>
inline void gate_tile(const scalar_t* h, int64_t ldh, const scalar_t* panel, int64_t K, Vec<scalar_t> (&out)[MR][NG]) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size();
  V acc[MR][NG];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int gi = 0; gi < NG; ++gi) acc[r][gi] = V(scalar_t(0));
  for (int64_t kk = 0; kk < K; ++kk) {
    const scalar_t* pr = panel + kk * NG * L;
    V w[NG];
#pragma GCC unroll 4
    for (int gi = 0; gi < NG; ++gi) w[gi] = V::loadu(pr + gi * L);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const V a(h[r * ldh + kk]);
#pragma GCC unroll 4
      for (int gi = 0; gi < NG; ++gi) acc[r][gi] = at::vec::fmadd(a, w[gi], acc[r][gi]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int gi = 0; gi < NG; ++gi) out[r][gi] = acc[r][gi];
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
template <typename scalar_t>
inline bool use_tiled(int64_t B) {
  const int mode = g_tiled.load(std::memory_order_relaxed);
  if (mode != 0) return mode > 0;
#if defined(CPU_CAPABILITY_AVX2)
  return std::is_same_v<scalar_t, float> && B >= 3;
#else
  return false;
#endif
}

// Unit blocks per thread chunk of a tiled step: below ~32k multiply-adds a step runs on one
// thread (S5: the fork/join would cost more than the step).
inline int64_t tile_grain(int64_t B, int64_t panel_width, int64_t P) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, B * panel_width * P));
}

// Calls f(std::integral_constant<int, R>{}, b) for the row tiles [b, b + R) of B rows: R = 3
// (kTileRows) while they last, then one tile of the 1 or 2 rows left.
constexpr int kTileRows = 3;
template <typename F>
inline void for_row_tiles(int64_t B, F&& f) {
  int64_t b = 0;
  for (; b + kTileRows <= B; b += kTileRows) f(std::integral_constant<int, kTileRows>{}, b);
  if (B - b == 2) f(std::integral_constant<int, 2>{}, b);
  if (B - b == 1) f(std::integral_constant<int, 1>{}, b);
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
    for (int64_t u = u0; u < u1; ++u) for_row_tiles(B, [&](auto mr, int64_t b) { rows(mr, b, u); });
  });
}

// The forward loop on tiled steps; arguments as forward_loop, with wpk = pack_whh(W_hh^T) in
// place of whh_t and hs2 a second (B, P) h buffer: h_{t-1} is read by every thread's tiles
// while h_t is written, so the two swap every step (with a projection h_t is written after the
// join, by project_step, and hs alone serves).
template <typename scalar_t, bool REC, int NG>
void forward_loop_tiled(int64_t T, int64_t s0, int64_t s1, int64_t g0, int64_t B, int64_t H, int64_t P, bool reverse,
                        const int64_t* len, scalar_t* G, const scalar_t* bias, scalar_t* C, scalar_t* out, scalar_t* hs,
                        scalar_t* cs, const scalar_t* wpk, const scalar_t* whr_t, scalar_t* hpre,
                        scalar_t* hmask, scalar_t* hs2, const Variants<scalar_t>& var) {
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size();
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH, NU = (H + L - 1) / L;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h;  // h_keep acts outside the cell
  const bool proj = whr_t != nullptr;
  const int64_t grain = tile_grain(B, NG * L, P);
  scalar_t* const no_ctl = nullptr;  // c̃ scratch: LayerNorm only
  scalar_t* hcur = hs;               // h_{t-1}
  scalar_t* hnxt = proj ? hs : hs2;  // h_t
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    scalar_t* Gt = G + (t - g0) * B * GH;
    scalar_t* Ot = out + t * B * P;
    const scalar_t* hrec = recurrent_input(var, hcur, hmask, B * P);
    const scalar_t* zc_t = var.zone_c ? var.zone_c.step(t) : nullptr;    // (B, H)
    const scalar_t* zh_step = var.zone_h ? var.zone_h.step(t) : nullptr;  // (B, P)
    const scalar_t* zh_t = proj ? nullptr : zh_step;  // with a projection, zoneout of h follows it
    // Row b, units [j, j + n): add the tile's product into G[t], then the cell.
    auto finish = [&](int64_t b, int64_t j, int64_t n, const V (&acc)[NG]) {
      scalar_t* g = Gt + b * GH;
      scalar_t* c_row = REC ? C + (t * B + b) * H : nullptr;
      scalar_t* h_dst = proj ? hpre + b * H : Ot + b * P;
      if (!row_active(len, b, t)) {
        std::fill(h_dst + j, h_dst + j + n, scalar_t(0));
        if (!proj) std::memcpy(hnxt + b * P + j, hcur + b * P + j, sizeof(scalar_t) * n);
        if (REC) {
          for (int64_t gi = 0; gi < NG; ++gi) std::fill(g + gi * H + j, g + gi * H + j + n, scalar_t(0));
          std::fill(c_row + j, c_row + j + n, scalar_t(0));
        }
        return;
      }
      for (int gi = 0; gi < NG; ++gi) {
        scalar_t* gp = g + gi * H + j;
        if (n == L) {
          (V::loadu(gp) + acc[gi]).store(gp);
        } else {
          scalar_t buf[L];
          acc[gi].store(buf);
          for (int64_t l = 0; l < n; ++l) gp[l] += buf[l];
        }
      }
      scalar_t* c = cs + b * H;
      const scalar_t* zc = zc_t ? zc_t + b * H : nullptr;
      const scalar_t* zh = zh_t ? zh_t + b * P : nullptr;
      const scalar_t* hprev = hcur + b * P;
      for_units<scalar_t>(plain, j, j + n, [&](auto tag, auto variants, int64_t jj) {
        cell_forward<decltype(tag), decltype(variants)::value, REC>(k, jj, g, bias, c, c_row, h_dst, zc, zh, hprev, no_ctl);
      });
      if (!proj) std::memcpy(hnxt + b * P + j, h_dst + j, sizeof(scalar_t) * n);
    };
    auto rows = [&](auto mr, int64_t b, int64_t u) {
      constexpr int R = decltype(mr)::value;
      V acc[R][NG];
      gate_tile<R, NG>(hrec + b * P, P, wpk + u * P * NG * L, P, acc);
      const int64_t j = u * L, n = std::min(L, H - j);
      for (int r = 0; r < R; ++r) finish(b + r, j, n, acc[r]);
    };
    at::parallel_for(0, NU, grain, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) for_row_tiles(B, [&](auto mr, int64_t b) { rows(mr, b, u); });
    });
    if (proj) {
      project_step<scalar_t>(B, H, P, t, len, hpre, whr_t, zh_step, Ot, hs);
    } else {
      std::swap(hcur, hnxt);
    }
  }
  if (hcur != hs) std::memcpy(hs, hcur, sizeof(scalar_t) * B * P);
}

// REC: record for backward / return_gates (G gets the activated gates, C every c_t, and with
// LayerNorm Nh, rh, Nc, rc every step's normalized values); else inference: G is read only, C
// is null, and the LayerNorm buffers are per-row scratch of one step ((B, GH), (B), (B, H), (B)).
template <typename scalar_t, bool REC>
void forward_loop(int64_t T,              // steps of the sequence; this call runs steps [s0, s1) in
                  int64_t s0, int64_t s1, //   processing order (t = T - 1 - s in reverse)
                  int64_t g0,             // the step G[0] holds (inference projects a chunk of steps at a time)
                  int64_t B, int64_t H, int64_t P, bool reverse, const int64_t* len,
                  scalar_t* G,            // (steps, B, GH) in: input projection (bias excluded); REC out: activated gates
                  const scalar_t* bias,   // (GH,) b_ih + b_hh, or null (none, or already in G)
                  scalar_t* C,            // (T, B, H) out when REC, else null
                  scalar_t* out,          // (T, B, P) out
                  scalar_t* hs,           // (B, P) in: h0, out: h_n
                  scalar_t* cs,           // (B, H) in: c0, out: c_n
                  const scalar_t* whh_t,  // (P, GH) = W_hh^T
                  const scalar_t* wpk,    // pack_cols<4>(W_hh^T) for LayerNorm's tiled h W_hh^T, or null (BLAS)
                  const scalar_t* whr_t,  // (H, P) = W_hr^T or null
                  scalar_t* hpre,         // (B, H) scratch when projecting
                  scalar_t* hmask,        // (B, P) scratch with recurrent dropout
                  const Variants<scalar_t>& var,
                  scalar_t* Rs,           // LayerNorm only: (B, GH) scratch for h W_hh^T
                  scalar_t* Nh,           //   (T, B, GH) out when REC: the normalized recurrent projection
                  scalar_t* rh,           //   (T, B) out: its 1/σ
                  scalar_t* Ctl,          //   (B, H) scratch: c̃_t
                  scalar_t* Nc,           //   (T, B, H) out when REC: LN(c̃_t) before gain and bias
                  scalar_t* rc) {         //   (T, B) out: its 1/σ
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h && !k.ln;  // h_keep acts outside the cell
  const bool proj = whr_t != nullptr;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    scalar_t* Gt = G + (t - g0) * B * GH;
    scalar_t* Ot = out + t * B * P;
    const scalar_t* hrec = recurrent_input(var, hs, hmask, B * P);
    if (k.ln && wpk) {  // h W_hh^T, normalized per row below
      cols_product<scalar_t, 4>(B, GH, P, hrec, P, wpk, Rs);
    } else if (k.ln) {
      step_gemm<scalar_t>(B, GH, P, hrec, P, whh_t, Rs, /*accumulate=*/false);
    } else {
      step_gemm<scalar_t>(B, GH, P, hrec, P, whh_t, Gt, /*accumulate=*/true);  // G[t] += h W_hh^T
    }
    const scalar_t* zc_t = var.zone_c ? var.zone_c.step(t) : nullptr;  // (B, H)
    const scalar_t* zh_step = var.zone_h ? var.zone_h.step(t) : nullptr;  // (B, P)
    const scalar_t* zh_t = proj ? nullptr : zh_step;  // with a projection, zoneout of h follows it
    at::parallel_for(0, B, row_grain(GH), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = REC ? t * B + b : b;  // the row's slot in the LayerNorm buffers
        scalar_t* g = Gt + b * GH;
        scalar_t* c_row = REC ? C + (t * B + b) * H : nullptr;
        scalar_t* h_dst = proj ? hpre + b * H : Ot + b * P;
        if (!row_active(len, b, t)) {
          std::fill(h_dst, h_dst + H, scalar_t(0));
          if (REC) {
            std::fill(g, g + GH, scalar_t(0));
            std::fill(c_row, c_row + H, scalar_t(0));
            if (k.ln) {
              std::fill(Nh + r * GH, Nh + (r + 1) * GH, scalar_t(0));
              std::fill(Nc + r * H, Nc + (r + 1) * H, scalar_t(0));
              rh[r] = rc[r] = scalar_t(0);
            }
          }
          continue;
        }
        if (k.ln) {  // G[t] += LN(h W_hh^T) · w + b; recording keeps LN(h W_hh^T) and its 1/σ
          const scalar_t* z = Rs + b * GH;
          scalar_t* nh = REC ? Nh + r * GH : nullptr;
          const auto m = ln_moments(z, GH, var.eps);
          rh[r] = m.r;
          for_lanes<scalar_t>(GH, [&](auto tag, int64_t q) {
            using VV = decltype(tag);
            const VV nv = (ld<VV>(z + q) - VV(m.mean)) * VV(m.r);
            if (REC) st(nv, nh + q);
            st(ld<VV>(g + q) + (nv * ld<VV>(var.ln_hw + q) + ld<VV>(var.ln_hb + q)), g + q);
          });
        }
        scalar_t* c = cs + b * H;
        const scalar_t* zc = zc_t ? zc_t + b * H : nullptr;
        const scalar_t* zh = zh_t ? zh_t + b * P : nullptr;
        const scalar_t* hprev = hs + b * P;
        scalar_t* ctl = k.ln ? Ctl + b * H : nullptr;
        for_units<scalar_t>(plain, 0, H, [&](auto tag, auto variants, int64_t j) {
          cell_forward<decltype(tag), decltype(variants)::value, REC>(k, j, g, bias, c, c_row, h_dst, zc, zh, hprev, ctl);
        });
        if (k.ln) {  // h̃ = o ⊙ tanh(LN(c̃) · w_c + b_c), then zoneout of h when not projecting
          scalar_t* nc = REC ? Nc + r * H : nullptr;
          const auto m = ln_moments(ctl, H, var.eps);
          rc[r] = m.r;
          const scalar_t* o = g + k.oo;
          for_lanes<scalar_t>(H, [&](auto tag, int64_t q) {
            using VV = decltype(tag);
            const VV nv = (ld<VV>(ctl + q) - VV(m.mean)) * VV(m.r);
            if (REC) st(nv, nc + q);
            VV h = ld<VV>(o + q) * tnh(nv * ld<VV>(var.ln_cw + q) + ld<VV>(var.ln_cb + q));
            if (zh) h = h + ld<VV>(zh + q) * (ld<VV>(hprev + q) - h);
            st(h, h_dst + q);
          });
        }
        if (!proj) std::memcpy(hs + b * P, h_dst, sizeof(scalar_t) * P);
      }
    });
    if (proj) project_step<scalar_t>(B, H, P, t, len, hpre, whr_t, zh_step, Ot, hs);
  }
}

inline Tensor opt(const optional<Tensor>& t) { return t.has_value() && t->defined() ? t->contiguous() : Tensor(); }

// Per-sequence lengths as contiguous int64 (B,), or an undefined tensor when all run T steps.
inline Tensor lengths_int64(const optional<Tensor>& lengths, int64_t B) {
  if (!lengths.has_value() || !lengths->defined()) return Tensor();
  Tensor len = lengths->to(at::kLong).contiguous();
  TORCH_CHECK(len.numel() == B, "fused lstm: lengths has ", len.numel(), " entries for batch ", B);
  return len;
}

// zh_s, zc_s: the masks' scratch (mask_scratch).
template <typename scalar_t>
Variants<scalar_t> make_variants(bool coupled, const Tensor& peep, const Tensor& h_keep, const Tensor& zone_h,
                                 const Tensor& zone_c, const std::vector<Tensor>& ln, double eps, int64_t B,
                                 int64_t H, int64_t P, const Tensor& zh_s, const Tensor& zc_s) {
  auto ptr = [](const Tensor& t) -> const scalar_t* { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
  Variants<scalar_t> v;
  v.coupled = coupled;
  v.peep = ptr(peep);
  v.h_keep = ptr(h_keep);
  v.zone_h = make_mask<scalar_t>(zone_h, zh_s, B, P);
  v.zone_c = make_mask<scalar_t>(zone_c, zc_s, B, H);
  if (!ln.empty()) v.ln_hw = ptr(ln[0]), v.ln_hb = ptr(ln[1]), v.ln_cw = ptr(ln[2]), v.ln_cb = ptr(ln[3]);
  v.eps = eps;
  return v;
}

// A zoneout mask as given: contiguous unless it is a stride-0 expansion of one rate (see Mask).
inline Tensor zone_mask(const optional<Tensor>& m) {
  if (!m.has_value() || !m->defined()) return Tensor();
  return is_constant_mask(*m) ? *m : m->contiguous();
}

void check_variants(int64_t T, int64_t B, int64_t H, int64_t P, bool coupled, const Tensor& x, const Tensor& peep,
                    const Tensor& h_keep, const Tensor& zone_h, const Tensor& zone_c) {
  auto check = [&](const Tensor& t, at::IntArrayRef want, const char* what, bool may_be_bool = false) {
    if (!t.defined()) return;
    TORCH_CHECK(t.sizes() == want, "fused lstm: ", what, " is ", t.sizes(), ", expected ", want);
    TORCH_CHECK(t.scalar_type() == x.scalar_type() || (may_be_bool && t.scalar_type() == at::kBool), "fused lstm: ",
                what, " is ", t.scalar_type(), ", expected ", x.scalar_type(), may_be_bool ? " or bool" : "");
  };
  check(peep, {coupled ? 2 : 3, H}, "the peephole weight");
  check(h_keep, {B, P}, "the recurrent-dropout mask");
  check(zone_h, {T, B, P}, "the zoneout mask of h", true);
  check(zone_c, {T, B, H}, "the zoneout mask of c", true);
}

// The LayerNorm gains and biases {w_hh', b_hh', w_c, b_c} and, when the kernel normalizes the
// input projection too, {w_ih', b_ih'}; contiguous; empty when off.
std::vector<Tensor> ln_params(const optional<std::vector<Tensor>>& ln, int64_t GH, int64_t H, const Tensor& x) {
  if (!ln.has_value()) return {};
  TORCH_CHECK(ln->size() == 4 || ln->size() == 6, "fused lstm: expected 4 LayerNorm tensors (hh weight, hh bias, "
              "c weight, c bias), or 6 with the input projection's weight and bias, got ", ln->size());
  std::vector<Tensor> out;
  for (size_t q = 0; q < ln->size(); ++q) {
    const int64_t n = q == 2 || q == 3 ? H : GH;
    TORCH_CHECK((*ln)[q].numel() == n && (*ln)[q].scalar_type() == x.scalar_type(), "fused lstm: LayerNorm tensor ", q,
                " is ", (*ln)[q].sizes(), " ", (*ln)[q].scalar_type(), ", expected (", n, ",) ", x.scalar_type());
    out.push_back((*ln)[q].contiguous());
  }
  return out;
}

// The forward of lstm_forward (rec = true) and lstm_infer (rec = false), on prepared weights:
// whh_t (P, GH) = W_hh^T, whr_t (H, P) = W_hr^T or undefined, bias (GH,) = b_ih + b_hh or
// undefined. Returns {out, h_n, c_n} and, when rec, {gates, c, Nh, rh, Nc, rc} (see lstm_forward).
// A packed weight (fused.py's caches hand them in) must have the layout this call reads.
inline void check_packed(const Tensor& pk, at::IntArrayRef sizes, const Tensor& x, const char* what) {
  TORCH_CHECK(pk.sizes() == sizes && pk.is_contiguous() && pk.scalar_type() == x.scalar_type(), "fused lstm: the packed ",
              what, " is ", pk.sizes(), " ", pk.scalar_type(), ", expected contiguous ", sizes, " ", x.scalar_type());
}

std::vector<Tensor> forward_impl(bool rec, const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                 const Tensor& whh_t, const Tensor& bias, const Tensor& whr_t,
                                 const optional<Tensor>& lengths, bool reverse, bool coupled,
                                 const optional<Tensor>& peephole, const optional<Tensor>& h_keep,
                                 const optional<Tensor>& zone_h, const optional<Tensor>& zone_c,
                                 const optional<std::vector<Tensor>>& layer_norm, double eps,
                                 const Tensor& whh_packed, const Tensor& whh_cols, const Tensor& wih_packed) {
  TORCH_CHECK(x.dim() == 3, "fused lstm: expected x of shape (T, B, I), got ", x.sizes());
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t NG = coupled ? 3 : 4;
  TORCH_CHECK(whh_t.dim() == 2 && whh_t.is_contiguous(), "fused lstm: expected a contiguous 2-d W_hh^T");
  const int64_t GH = whh_t.size(1), H = GH / NG, P = whh_t.size(0);
  TORCH_CHECK(GH % NG == 0, "fused lstm: weight_hh has ", GH, " rows, not a multiple of ", NG, " gates");
  TORCH_CHECK(!w_ih.defined() || w_ih.sizes() == at::IntArrayRef({GH, I}), "fused lstm: weight_ih is ",
              w_ih.sizes(), " for input size ", I);
  TORCH_CHECK(w_ih.defined() || I == GH, "fused lstm: without weight_ih, x must be the input projection (T, B, ", GH,
              "), got ", x.sizes());
  TORCH_CHECK(!bias.defined() || (bias.numel() == GH && bias.is_contiguous() && bias.scalar_type() == x.scalar_type()),
              "fused lstm: the bias is ", bias.sizes(), ", expected (", GH, ",) contiguous ", x.scalar_type());
  const std::vector<Tensor> ln = ln_params(layer_norm, GH, H, x);
  TORCH_CHECK(ln.size() != 6 || w_ih.defined(), "fused lstm: the input projection's LayerNorm needs weight_ih");
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({B, P}), "fused lstm: h0 is ", h0.sizes(), ", expected (", B, ", ", P, ")");
  TORCH_CHECK(c0.sizes() == at::IntArrayRef({B, H}), "fused lstm: c0 is ", c0.sizes(), ", expected (", B, ", ", H, ")");
  const bool proj = whr_t.defined();
  TORCH_CHECK(proj || P == H, "fused lstm: weight_hh has ", P, " columns but hidden size is ", H, " and no weight_hr");
  TORCH_CHECK(!proj || (whr_t.sizes() == at::IntArrayRef({H, P}) && whr_t.is_contiguous()),
              "fused lstm: W_hr^T is ", whr_t.sizes(), ", expected contiguous (", H, ", ", P, ")");
  Tensor peep = opt(peephole), hk = opt(h_keep), zh = zone_mask(zone_h), zc = zone_mask(zone_c);
  check_variants(T, B, H, P, coupled, x, peep, hk, zh, zc);
  const Tensor zh_s = mask_scratch(zh, B, P, x), zc_s = mask_scratch(zc, B, H, x);
  const Tensor len_c = lengths_int64(lengths, B);
  const int64_t* len = len_c.defined() ? len_c.data_ptr<int64_t>() : nullptr;

  auto opts = x.options();
  const Tensor xc = x.contiguous();
  // The input projection, G = X W_ih^T, by chunks of steps (~512 rows each: still one efficient
  // GEMM, and a chunk is still in cache when its steps run). Recording keeps every step's gates
  // for backward, so G holds all T steps; inference reuses one chunk-sized G: a (T, B, GH)
  // buffer would be freshly mapped memory (page faults: 10 ms of S2's 170). Both project the
  // same chunks, so inference is bit for bit the training forward.
  const int64_t chunk = std::min(T, std::max<int64_t>(1, (512 + B - 1) / B));
  Tensor G = at::empty({rec ? T : chunk, B, GH}, opts);
  // The input projection's LayerNorm, G = LN(x W_ih^T)·w_ih' + b_ih' (b_ih + b_hh come in the
  // gate pass), as one pass over the chunk's rows split across threads (inside the step loop it
  // would run on B rows at a time: serial at small B). Recording keeps LN(x W_ih^T) and 1/σ.
  const bool ln_in = ln.size() == 6;
  Tensor Ni = ln_in && rec ? at::empty({T, B, GH}, opts) : Tensor();
  Tensor ri = ln_in && rec ? at::empty({T, B}, opts) : Tensor();
  // With tiled steps the input projection runs on the same register tiles (cols_product) over
  // W_ih^T packed once per call, or in inference once per weight version (fused.py's cache).
  // MKL's sgemm packs W_ih^T again for every chunk: 13 times a 16 MB copy per S4 forward, and at
  // one-step decoding (T = 1, B = 5, 256 → 512) more than the product costs. Measured: inference
  // S4 651 → 613 ms, S2 169 → 163 ms, T = 1 B = 5 394 → 262 µs; training S2 422 → 413 ms.
  Tensor wih_pk;
  if (w_ih.defined()) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_pack_wih", [&] {
      if (!use_tiled<scalar_t>(B)) return;
      wih_pk = wih_packed.defined() ? wih_packed : pack_cols<scalar_t, 4>(w_ih.t().contiguous());
      constexpr int64_t W = 4 * Vec<scalar_t>::size();
      check_packed(wih_pk, {(GH + W - 1) / W, I, W}, x, "W_ih^T (pack_cols)");
    });
  }
  auto g_step0 = [&](int64_t t_lo) -> int64_t { return rec ? 0 : t_lo; };  // the step G[0] holds
  auto project = [&](int64_t t_lo, int64_t n) {  // steps [t_lo, t_lo + n) into G
    const int64_t at_step = t_lo - g_step0(t_lo);
    Tensor Gn = G.narrow(0, at_step, n);
    if (wih_pk.defined()) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_tiled_projection", [&] {
        cols_product<scalar_t, 4>(n * B, GH, I, xc.narrow(0, t_lo, n).data_ptr<scalar_t>(), I,
                                  wih_pk.data_ptr<scalar_t>(), Gn.data_ptr<scalar_t>());
      });
    } else if (w_ih.defined()) {
      Tensor G2 = Gn.view({n * B, GH});
      at::mm_out(G2, xc.narrow(0, t_lo, n).view({n * B, I}), w_ih.t());
    } else {
      Gn.copy_(xc.narrow(0, t_lo, n));
    }
    if (!ln_in) return;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_ln_input", [&] {
      scalar_t* g0 = Gn.data_ptr<scalar_t>();
      scalar_t* n0 = rec ? Ni.data_ptr<scalar_t>() + t_lo * B * GH : nullptr;
      scalar_t* r0 = rec ? ri.data_ptr<scalar_t>() + t_lo * B : nullptr;
      const scalar_t* w = ln[4].data_ptr<scalar_t>();
      const scalar_t* bb = ln[5].data_ptr<scalar_t>();
      at::parallel_for(0, n * B, row_grain(GH), [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          scalar_t* g = g0 + q * GH;  // in place: each entry is read before it is written
          scalar_t* nr = n0 ? n0 + q * GH : nullptr;
          const auto m = ln_moments(g, GH, eps);
          if (r0) r0[q] = m.r;
          for_lanes<scalar_t>(GH, [&](auto tag, int64_t j) {
            using VV = decltype(tag);
            const VV nv = (ld<VV>(g + j) - VV(m.mean)) * VV(m.r);
            if (nr) st(nv, nr + j);
            st(nv * ld<VV>(w + j) + ld<VV>(bb + j), g + j);
          });
        }
      });
    });
  };
  Tensor C = rec ? at::empty({T, B, H}, opts) : Tensor();
  Tensor out = at::empty({T, B, P}, opts);
  Tensor hs = h0.contiguous().clone();
  Tensor cs = c0.contiguous().clone();
  Tensor hpre = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor hmask = hk.defined() ? at::empty({B, P}, opts) : Tensor();
  const bool has_ln = !ln.empty();
  Tensor hs2 = has_ln || proj ? Tensor() : at::empty({B, P}, opts);  // the other h buffer of forward_loop_tiled
  const int64_t R = rec ? T * B : B;  // rows of the 1/σ records: every step's, or one step's
  Tensor Rs = has_ln ? at::empty({B, GH}, opts) : Tensor(), Nh = has_ln && rec ? at::empty({R, GH}, opts) : Tensor();
  Tensor rh = has_ln ? at::empty({R}, opts) : Tensor(), Ctl = has_ln ? at::empty({B, H}, opts) : Tensor();
  Tensor Nc = has_ln && rec ? at::empty({R, H}, opts) : Tensor(), rc = has_ln ? at::empty({R}, opts) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_forward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const auto var = make_variants<scalar_t>(coupled, peep, hk, zh, zc, ln, eps, B, H, P, zh_s, zc_s);
    // Steps [s0, s1) in processing order are times [t_lo, t_lo + n): project them, then run them
    // (the loops' g0 is the step G[0] holds).
    auto each_chunk = [&](auto&& steps) {
      for (int64_t s0 = 0; s0 < T; s0 += chunk) {
        const int64_t s1 = std::min(T, s0 + chunk), t_lo = reverse ? T - s1 : s0;
        project(t_lo, s1 - s0);
        steps(s0, s1, g_step0(t_lo));
      }
    };
    const bool tiled = use_tiled<scalar_t>(B);
    if (tiled && !has_ln) {
      const Tensor wpk = whh_packed.defined() ? whh_packed : pack_whh<scalar_t>(whh_t, NG);
      constexpr int64_t L = Vec<scalar_t>::size();
      check_packed(wpk, {(H + L - 1) / L, P, NG * L}, x, "W_hh^T (pack_whh)");
      auto tiled = [&](auto loop) {
        each_chunk([&](int64_t s0, int64_t s1, int64_t t_lo) {
          loop(T, s0, s1, t_lo, B, H, P, reverse, len, ptr(G), ptr(bias), ptr(C), ptr(out), ptr(hs), ptr(cs),
               ptr(wpk), ptr(whr_t), ptr(hpre), ptr(hmask), ptr(hs2), var);
        });
      };
      if (coupled) {
        if (rec) tiled(forward_loop_tiled<scalar_t, true, 3>); else tiled(forward_loop_tiled<scalar_t, false, 3>);
      } else {
        if (rec) tiled(forward_loop_tiled<scalar_t, true, 4>); else tiled(forward_loop_tiled<scalar_t, false, 4>);
      }
    } else {
      // LayerNorm's h W_hh^T on the register tiles, over W_hh^T in column panels (inference: cached)
      const Tensor wpk = !tiled ? Tensor() : whh_cols.defined() ? whh_cols : pack_cols<scalar_t, 4>(whh_t);
      constexpr int64_t W = 4 * Vec<scalar_t>::size();
      if (wpk.defined()) check_packed(wpk, {(GH + W - 1) / W, P, W}, x, "W_hh^T (pack_cols)");
      auto rows = [&](auto loop) {
        each_chunk([&](int64_t s0, int64_t s1, int64_t t_lo) {
          loop(T, s0, s1, t_lo, B, H, P, reverse, len, ptr(G), ptr(bias), ptr(C), ptr(out), ptr(hs), ptr(cs),
               ptr(whh_t), ptr(wpk), ptr(whr_t), ptr(hpre), ptr(hmask), var, ptr(Rs), ptr(Nh), ptr(rh), ptr(Ctl),
               ptr(Nc), ptr(rc));
        });
      };
      if (rec) rows(forward_loop<scalar_t, true>); else rows(forward_loop<scalar_t, false>);
    }
  });
  if (!rec) return {out, hs, cs};
  if (has_ln) Nh = Nh.view({T, B, GH}), rh = rh.view({T, B}), Nc = Nc.view({T, B, H}), rc = rc.view({T, B});
  return {out, hs, cs, G, C, Nh, rh, Nc, rc, Ni, ri};
}

// b_ih + b_hh (GH,), or undefined without biases.
Tensor summed_bias(const optional<Tensor>& b_ih, const optional<Tensor>& b_hh) {
  if (!b_ih.has_value() || !b_ih->defined()) return Tensor();
  Tensor bias = *b_ih;
  if (b_hh.has_value() && b_hh->defined()) bias = bias + *b_hh;
  return bias.contiguous();
}

// Returns {out (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,GH) activated i|f|g|o (coupled i|g|o), c (T,B,H),
// and with LayerNorm Nh (T,B,GH), rh (T,B), Nc (T,B,H), rc (T,B), and with 6 LayerNorm tensors
// Ni (T,B,GH), ri (T,B) (the input projection's) for backward (else undefined)}.
// Without w_ih, x is the input projection itself (T, B, GH) (biases are still added when given).
std::vector<Tensor> lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const optional<Tensor>& w_ih_,
                                 const Tensor& w_hh, const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
                                 const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse,
                                 bool coupled, const optional<Tensor>& peephole, const optional<Tensor>& h_keep,
                                 const optional<Tensor>& zone_h, const optional<Tensor>& zone_c,
                                 const optional<std::vector<Tensor>>& layer_norm, double eps) {
  at::AutoDispatchBelowADInplaceOrView guard;  // plain tensors in, plain tensors out: no autograd here
  const bool proj = w_hr.has_value() && w_hr->defined();
  return forward_impl(true, x, h0, c0, opt(w_ih_), w_hh.t().contiguous(), summed_bias(b_ih, b_hh),
                      proj ? w_hr->t().contiguous() : Tensor(), lengths, reverse, coupled, peephole, h_keep, zone_h,
                      zone_c, layer_norm, eps, Tensor(), Tensor(), Tensor());
}

// Inference (no autograd, nothing recorded): {out (T,B,P), h_n (B,P), c_n (B,H)}. Takes the
// weights prepared once by the caller (fused.py caches them per weight version): whh_t (P, GH)
// = W_hh^T contiguous, bias (GH,) = b_ih + b_hh or None, whr_t (H, P) = W_hr^T or None.
std::vector<Tensor> lstm_infer(const Tensor& x, const Tensor& h0, const Tensor& c0, const optional<Tensor>& w_ih,
                               const Tensor& whh_t, const optional<Tensor>& bias, const optional<Tensor>& whr_t,
                               const optional<Tensor>& lengths, bool reverse, bool coupled,
                               const optional<Tensor>& peephole, const optional<Tensor>& h_keep,
                               const optional<Tensor>& zone_h, const optional<Tensor>& zone_c,
                               const optional<std::vector<Tensor>>& layer_norm, double eps,
                               const optional<Tensor>& whh_packed, const optional<Tensor>& whh_cols,
                               const optional<Tensor>& wih_packed) {
  at::AutoDispatchBelowADInplaceOrView guard;
  auto given = [](const optional<Tensor>& t) { return t.has_value() && t->defined() ? *t : Tensor(); };
  return forward_impl(false, x, h0, c0, opt(w_ih), whh_t, given(bias), given(whr_t), lengths, reverse, coupled,
                      peephole, h_keep, zone_h, zone_c, layer_norm, eps, given(whh_packed), given(whh_cols),
                      given(wih_packed));
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename scalar_t>
void backward_loop(int64_t T,              // steps of the sequence; this call runs steps [s0, s1) in
                   int64_t s0, int64_t s1, //   processing order, from s1 - 1 down (t = T - 1 - s in reverse)
                   int64_t d0,             // the step dG[0], DR[0] and dZ[0] hold (backward works by chunks of steps)
                   int64_t B, int64_t H, int64_t P, bool reverse, const int64_t* len,
                   const scalar_t* G,      // (T, B, GH) activated gates
                   const scalar_t* C,      // (T, B, H)
                   const scalar_t* c0,     // (B, H)
                   const scalar_t* gout,   // (T, B, P) or null
                   const scalar_t* gG,     // (T, B, GH) gradient w.r.t. the returned gates, or null
                   const scalar_t* gC,     // (T, B, H) gradient w.r.t. the returned cell states, or null
                   scalar_t* dh,           // (B, P) in: dL/dh_n, out: dL/dh0
                   scalar_t* dc,           // (B, H) in: dL/dc_n, out: dL/dc0
                   scalar_t* dG,           // (steps, B, GH) out: pre-activation gradients
                   scalar_t* dH,           // (T, B, P) out when projecting (dL/dh̃_t), else (B, H) scratch
                   scalar_t* Hpre,         // (T, B, H) out when projecting: o ⊙ tanh(c̃), else null
                   const scalar_t* whh,    // (GH, P)
                   const scalar_t* whh_pk, // pack_cols<4>(W_hh) for the tiled dG[t] W_hh, or null (BLAS)
                   const scalar_t* whr,    // (P, H) or null
                   scalar_t* dhpre,        // (B, H) scratch when projecting
                   scalar_t* dh_new,       // (B, P) scratch
                   scalar_t* dh_zone,      // (B, P) scratch with zoneout of h: z_h ⊙ dL/dh_t
                   scalar_t* Cprev,        // (steps, B, H) out with peepholes: c_{t-1}, else null
                   scalar_t* Ctil,         // (steps, B, H) out with peepholes: c̃_t, else null
                   const Variants<scalar_t>& var,
                   const scalar_t* Nh,     // LayerNorm only: (T, B, GH) from forward
                   const scalar_t* rh,     //   (T, B)
                   const scalar_t* Nc,     //   (T, B, H)
                   const scalar_t* rc,     //   (T, B)
                   scalar_t* DR,           //   (steps, B, GH) out: dL/d(h W_hh^T)
                   scalar_t* LNacc,        //   (threads, 3·GH + 2·H) out: per-thread sums of the LayerNorm
                                           //   gradients d w_hh', d b_hh', d w_c, d b_c, d w_ih' (zeroed by
                                           //   the caller)
                   int64_t acc_rows,       //   its rows
                   const scalar_t* ln_iw,  //   input projection's LayerNorm only: its gain w_ih' (GH,)
                   const scalar_t* Ni,     //     (T, B, GH) LN(x W_ih^T) from forward
                   const scalar_t* ri,     //     (T, B) its 1/σ
                   scalar_t* dZ,           //     (steps, B, GH) out: dL/d(x W_ih^T)
                   scalar_t* TCO,          //   (B, H) scratch: tanh(LN(c̃)·w_c + b_c)
                   scalar_t* DCL) {        //   (B, H) scratch: the h path's dL/dc̃
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h && !k.ln;  // h_keep acts outside the cell
  const bool proj = whr != nullptr;
  for (int64_t s = s1 - 1; s >= s0; --s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const int64_t dt = t - d0;  // the step's slot in dG, DR, dZ
    const scalar_t* zh_step = var.zone_h ? var.zone_h.step(t) : nullptr;  // (B, P)
    // dL/dh_t = carry from step t+1 (in processing order) + the output's own gradient; with
    // zoneout z_h of it goes straight to h_{t-1} and (1 - z_h) of it to h̃_t.
    scalar_t* dht = proj ? dH + t * B * P : dH;
    for (int64_t b = 0; b < B; ++b) {
      scalar_t* d = dht + b * P;
      if (!row_active(len, b, t)) {
        std::fill(d, d + P, scalar_t(0));
        continue;
      }
      const scalar_t* carry = dh + b * P;
      if (gout) {
        const scalar_t* go = gout + (t * B + b) * P;
        for (int64_t j = 0; j < P; ++j) d[j] = carry[j] + go[j];
      } else {
        std::memcpy(d, carry, sizeof(scalar_t) * P);
      }
      if (zh_step) {
        const scalar_t* z = zh_step + b * P;
        scalar_t* dz = dh_zone + b * P;
        for (int64_t j = 0; j < P; ++j) {
          dz[j] = z[j] * d[j];
          d[j] = (scalar_t(1) - z[j]) * d[j];
        }
      }
    }
    const scalar_t* dhp = dht;  // dL/d(o ⊙ tanh c̃), (B, H)
    if (proj) {
      step_gemm<scalar_t>(B, H, P, dht, P, whr, dhpre, /*accumulate=*/false);  // dh̃_t W_hr
      dhp = dhpre;
    }
    const scalar_t* Gt = G + t * B * GH;
    const scalar_t* Ct = C + t * B * H;
    scalar_t* dGt = dG + dt * B * GH;
    const scalar_t* zc_t = var.zone_c ? var.zone_c.step(t) : nullptr;  // (B, H)
    at::parallel_for(0, B, row_grain(GH), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* dg = dGt + b * GH;
        scalar_t* hp = proj ? Hpre + (t * B + b) * H : nullptr;
        scalar_t* cpo = Cprev ? Cprev + (dt * B + b) * H : nullptr;
        scalar_t* cto = Ctil ? Ctil + (dt * B + b) * H : nullptr;
        if (!row_active(len, b, t)) {
          std::fill(dg, dg + GH, scalar_t(0));
          if (hp) std::fill(hp, hp + H, scalar_t(0));
          if (cpo) std::fill(cpo, cpo + H, scalar_t(0)), std::fill(cto, cto + H, scalar_t(0));
          if (k.ln) std::fill(DR + (dt * B + b) * GH, DR + (dt * B + b + 1) * GH, scalar_t(0));
          if (dZ) std::fill(dZ + (dt * B + b) * GH, dZ + (dt * B + b + 1) * GH, scalar_t(0));
          continue;
        }
        const scalar_t* g = Gt + b * GH;
        const scalar_t* c = Ct + b * H;
        // c_{t-1}: c0 at the row's first step, else the neighbouring step's cell state.
        const scalar_t* cp = t == row_start(len, b, T, reverse) ? c0 + b * H
                                                                : C + ((reverse ? t + 1 : t - 1) * B + b) * H;
        const scalar_t* dhr = dhp + b * H;
        scalar_t* dcr = dc + b * H;
        const scalar_t* gg_ = gG ? gG + (t * B + b) * GH : nullptr;
        const scalar_t* gc_ = gC ? gC + (t * B + b) * H : nullptr;
        const scalar_t* zc = zc_t ? zc_t + b * H : nullptr;
        scalar_t* tco = nullptr;
        scalar_t* dcl = nullptr;
        // This thread's sums of the LayerNorm parameter gradients, added while the rows are in
        // cache (summing (T, B, ·) records after the loop cost S3 training ~10 %).
        scalar_t* acc = k.ln ? LNacc + std::min<int64_t>(at::get_thread_num(), acc_rows - 1) * (3 * GH + 2 * H) : nullptr;
        if (k.ln) {  // through h̃ = o ⊙ tanh(LN(c̃)·w_c + b_c) back to c̃
          tco = TCO + b * H, dcl = DCL + b * H;
          const scalar_t* nc = Nc + (t * B + b) * H;
          scalar_t* acw = acc + 2 * GH;
          scalar_t* acb = acw + H;
          const scalar_t* o = g + k.oo;
          LaneSum<scalar_t> s1, s2;  // LN's backward sums of dcl = d ⊙ w_c
          for_lanes<scalar_t>(H, [&](auto tag, int64_t q) {
            using VV = decltype(tag);
            const VV cw = ld<VV>(var.ln_cw + q);
            const VV ncv = ld<VV>(nc + q);
            const VV tc = tnh(ncv * cw + ld<VV>(var.ln_cb + q));
            const VV d = ld<VV>(dhr + q) * ld<VV>(o + q) * (VV(scalar_t(1)) - tc * tc);
            const VV dn = d * cw;
            st(tc, tco + q);
            st(ld<VV>(acw + q) + d * ncv, acw + q);  // d w_c += d ⊙ LN(c̃)
            st(ld<VV>(acb + q) + d, acb + q);        // d b_c += d
            st(dn, dcl + q);
            s1.add(dn);
            s2.add(dn * ncv);
          });
          ln_row_backward_finish(dcl, nc, rc[t * B + b], s1.total(), s2.total(), H, dcl);
        }
        for_units<scalar_t>(plain, 0, H, [&](auto tag, auto variants, int64_t j) {
          cell_backward<decltype(tag), decltype(variants)::value>(k, j, g, c, cp, dhr, dcr, gg_, gc_, zc, dg, hp, cpo, cto, tco, dcl);
        });
        if (k.ln) {  // through G[t] += LN(h W_hh^T)·w + b back to h W_hh^T: d w_hh' += dG ⊙ LN(h W_hh^T),
                     // d b_hh' += dG (which is also every bias's gradient)
          ln_affine_row_backward(dg, var.ln_hw, Nh + (t * B + b) * GH, rh[t * B + b], GH, acc, acc + GH,
                                 DR + (dt * B + b) * GH);
        }
        if (dZ) {  // through G[t] = LN(x W_ih^T)·w_i + b_i + … back to x W_ih^T: d w_ih' += dG ⊙ LN(x W_ih^T);
                   // dz may be dg itself (the last use of dg)
          ln_affine_row_backward(dg, ln_iw, Ni + (t * B + b) * GH, ri[t * B + b], GH, acc + 2 * GH + 2 * H,
                                 static_cast<scalar_t*>(nullptr), dZ + (dt * B + b) * GH);
        }
      }
    });
    const scalar_t* dR = k.ln ? DR + dt * B * GH : dGt;  // the gradient reaching h W_hh^T
    if (whh_pk) {  // dG[t] W_hh
      cols_product<scalar_t, 4>(B, P, GH, dR, GH, whh_pk, dh_new);
    } else {
      step_gemm<scalar_t>(B, P, GH, dR, GH, whh, dh_new, /*accumulate=*/false);
    }
    // dL/dh_{t-1} = dG[t] W_hh (⊙ h_keep) (+ z_h ⊙ dL/dh_t). Rows that did not run at step t
    // pass their carried gradient through unchanged.
    for (int64_t b = 0; b < B; ++b) {
      if (!row_active(len, b, t)) continue;
      scalar_t* d = dh + b * P;
      const scalar_t* n = dh_new + b * P;
      if (!var.h_keep && !var.zone_h) {
        std::memcpy(d, n, sizeof(scalar_t) * P);
        continue;
      }
      const scalar_t* m = var.h_keep ? var.h_keep + b * P : nullptr;
      const scalar_t* dz = var.zone_h ? dh_zone + b * P : nullptr;
      for (int64_t j = 0; j < P; ++j) d[j] = (m ? n[j] * m[j] : n[j]) + (dz ? dz[j] : scalar_t(0));
    }
  }
}

// Returns {dx, dh0, dc0, dw_ih, dw_hh, db (for both b_ih and b_hh), dw_hr, dpeephole, and the
// LayerNorm gradients d w_hh', d b_hh', d w_c, d b_c, d w_ih', d b_ih'}; undefined where not
// applicable. Without w_ih, dx is the gradient of the input projection that x then is.
std::vector<Tensor> lstm_backward(const optional<Tensor>& grad_out, const optional<Tensor>& grad_hn,
                                  const optional<Tensor>& grad_cn, const optional<Tensor>& grad_gates,
                                  const optional<Tensor>& grad_c, const Tensor& x, const Tensor& h0,
                                  const Tensor& c0, const optional<Tensor>& w_ih_, const Tensor& w_hh, bool has_bias,
                                  const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse,
                                  const Tensor& out, const Tensor& G, const Tensor& C, bool need_dx, bool coupled,
                                  const optional<Tensor>& peephole, const optional<Tensor>& h_keep,
                                  const optional<Tensor>& zone_h, const optional<Tensor>& zone_c,
                                  const optional<std::vector<Tensor>>& layer_norm, double eps,
                                  const optional<Tensor>& Nh_, const optional<Tensor>& rh_,
                                  const optional<Tensor>& Nc_, const optional<Tensor>& rc_,
                                  const optional<Tensor>& Ni_, const optional<Tensor>& ri_) {
  at::AutoDispatchBelowADInplaceOrView guard;
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const Tensor w_ih = opt(w_ih_);
  const int64_t GH = w_hh.size(0), H = GH / (coupled ? 3 : 4), P = w_hh.size(1);
  const std::vector<Tensor> ln = ln_params(layer_norm, GH, H, x);
  const bool has_ln = !ln.empty();
  Tensor Nh = opt(Nh_), rh = opt(rh_), Nc = opt(Nc_), rc = opt(rc_);
  TORCH_CHECK(!has_ln || (Nh.defined() && rh.defined() && Nc.defined() && rc.defined()),
              "fused lstm: LayerNorm backward needs the forward's normalized values");
  const int64_t acc_rows = std::max<int64_t>(1, at::get_num_threads());
  Tensor LNacc = has_ln ? at::zeros({acc_rows, 3 * GH + 2 * H}, x.options()) : Tensor();
  const bool ln_in = ln.size() == 6;
  Tensor Ni = opt(Ni_), ri = opt(ri_);
  TORCH_CHECK(!ln_in || (Ni.defined() && ri.defined()), "fused lstm: the input LayerNorm's backward needs its forward values");
  Tensor TCO = has_ln ? at::empty({B, H}, x.options()) : Tensor();
  Tensor DCL = has_ln ? at::empty({B, H}, x.options()) : Tensor();
  const bool proj = w_hr.has_value() && w_hr->defined();
  Tensor peep = opt(peephole), hk = opt(h_keep), zh = zone_mask(zone_h), zc = zone_mask(zone_c);
  check_variants(T, B, H, P, coupled, x, peep, hk, zh, zc);
  const Tensor zh_s = mask_scratch(zh, B, P, x), zc_s = mask_scratch(zc, B, H, x);
  const Tensor len_c = lengths_int64(lengths, B);
  const int64_t* len = len_c.defined() ? len_c.data_ptr<int64_t>() : nullptr;
  auto opts = x.options();
  Tensor gout = opt(grad_out), gG = opt(grad_gates), gC = opt(grad_c);
  Tensor dh = grad_hn.has_value() && grad_hn->defined() ? grad_hn->contiguous().clone() : at::zeros({B, P}, opts);
  Tensor dc = grad_cn.has_value() && grad_cn->defined() ? grad_cn->contiguous().clone() : at::zeros({B, H}, opts);
  // The step gradients dG (and with LayerNorm DR = dL/d(h W_hh^T) and dZ = dL/d(x W_ih^T)) live for
  // one chunk of steps (kBackwardChunkRows): after each chunk, its rows go into the weight and input
  // gradients as GEMMs, and the buffers are reused. Whole-sequence (T, B, GH) buffers were fresh
  // memory every call: their page faults cost as much as the LayerNorm arithmetic (S1), and 12,800
  // faults per call at S2. Without w_ih, dx is dG itself, so then one chunk holds every step.
  const int64_t knob = g_backward_chunk_rows.load(std::memory_order_relaxed);
  const int64_t rows = knob > 0 ? knob : kBackwardChunkRows;
  const int64_t chunk = !w_ih.defined() ? T : std::min(T, std::max<int64_t>(1, (rows + B - 1) / B));
  Tensor dG = at::empty({chunk, B, GH}, opts);
  Tensor DR = has_ln ? at::empty({chunk, B, GH}, opts) : Tensor();
  // dZ overwrites dG row by row: after a row's LayerNorm backward only the peephole sums read its
  // dG, so a second buffer is needed only with peepholes.
  Tensor dZ = !ln_in ? Tensor() : peep.defined() ? at::empty({chunk, B, GH}, opts) : dG;
  Tensor dH = proj ? at::empty({T, B, P}, opts) : at::empty({B, H}, opts);
  Tensor Hpre = proj ? at::empty({T, B, H}, opts) : Tensor();
  Tensor dhpre = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dh_new = at::empty({B, P}, opts);
  Tensor dh_zone = zh.defined() ? at::empty({B, P}, opts) : Tensor();
  Tensor Cprev = peep.defined() ? at::empty({chunk, B, H}, opts) : Tensor();
  Tensor Ctil = peep.defined() ? at::empty({chunk, B, H}, opts) : Tensor();
  Tensor whh = w_hh.contiguous();
  Tensor whr = proj ? w_hr->contiguous() : Tensor();
  Tensor Gc = G.contiguous(), Cc = C.contiguous(), c0c = c0.contiguous();

  Tensor x2 = x.contiguous().view({T * B, I});
  Tensor dx = w_ih.defined() && need_dx ? at::empty({T, B, I}, opts) : Tensor();
  Tensor dw_ih = w_ih.defined() ? at::zeros({GH, I}, opts) : Tensor();
  Tensor db = w_ih.defined() && has_bias && !has_ln ? at::zeros({GH}, opts) : Tensor();
  // dW_hh = Σ_t dR[t]^T h_{t-1} (⊙ h_keep), dR being the gradient reaching h W_hh^T. h_{t-1} is the
  // neighbouring step's output, except at a row's first step where it is h0; outputs past a
  // length are zero and dR there is zero, so the shifted product is exact and only the first
  // steps need the h0 term.
  Tensor out_c = hk.defined() ? out * hk : out.contiguous();
  Tensor h0_c = hk.defined() ? h0 * hk : h0.contiguous();
  Tensor dw_hh = at::zeros({GH, P}, opts);
  std::vector<Tensor> peep_sums;  // Σ dG ⊙ c_{t-1} for i and f, Σ dG ⊙ c̃_t for o
  // The gradients of the chunk at times [t_lo, t_lo + n), held in the buffers' first n steps.
  auto flush = [&](int64_t t_lo, int64_t n) {
    const Tensor dGc = dG.narrow(0, 0, n), dZc = (ln_in ? dZ : dG).narrow(0, 0, n);
    const Tensor dRc = (has_ln ? DR : dG).narrow(0, 0, n);
    if (w_ih.defined()) {
      const Tensor dZ2 = dZc.view({n * B, GH});
      if (dx.defined()) {
        Tensor dx2 = dx.view({T * B, I}).narrow(0, t_lo * B, n * B);
        at::mm_out(dx2, dZ2, w_ih);
      }
      dw_ih.addmm_(dZ2.t(), x2.narrow(0, t_lo * B, n * B));
      if (db.defined()) db.add_(dGc.view({n * B, GH}).sum(0));
    }
    // Times in the chunk whose h_{t-1} is another step's output: t ≥ 1 forward, t ≤ T - 2 in reverse.
    const int64_t a = reverse ? t_lo : std::max<int64_t>(t_lo, 1), e = reverse ? std::min(t_lo + n, T - 1) : t_lo + n;
    if (e > a) {
      const Tensor h_prev = out_c.narrow(0, reverse ? a + 1 : a - 1, e - a).reshape({(e - a) * B, P});
      dw_hh.addmm_(dRc.narrow(0, a - t_lo, e - a).reshape({(e - a) * B, GH}).t(), h_prev);
    }
    Tensor dR_first;  // (B, GH): the gradient at each row's first step, where it falls in this chunk
    if (!reverse) {
      if (t_lo == 0) dR_first = dRc[0];
    } else if (len == nullptr) {
      if (t_lo + n == T) dR_first = dRc[n - 1];
    } else {
      const Tensor first = len_c - 1;  // each row's first step in reverse (-1: an empty row)
      const Tensor here = (first >= t_lo).logical_and(first < t_lo + n);
      if (here.any().item<bool>()) {
        const Tensor idx = (first - t_lo).clamp(0, n - 1).view({1, B, 1}).expand({1, B, GH});
        dR_first = dRc.gather(0, idx).squeeze(0).mul_(here.to(dG.scalar_type()).unsqueeze(1));
      }
    }
    if (dR_first.defined()) dw_hh.addmm_(dR_first.t(), h0_c);
    if (peep.defined()) {
      auto gate = [&](int64_t off) { return dGc.narrow(2, off, H); };
      const Tensor cp = Cprev.narrow(0, 0, n), ct = Ctil.narrow(0, 0, n);
      std::vector<Tensor> rows = {(gate(0) * cp).sum({0, 1})};
      if (!coupled) rows.push_back((gate(H) * cp).sum({0, 1}));
      rows.push_back((gate(GH - H) * ct).sum({0, 1}));
      const Tensor chunk_sums = at::stack(rows);
      if (peep_sums.empty()) peep_sums.push_back(chunk_sums); else peep_sums[0].add_(chunk_sums);
    }
  };
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_backward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const auto var = make_variants<scalar_t>(coupled, peep, hk, zh, zc, ln, eps, B, H, P, zh_s, zc_s);
    const bool tiled = use_tiled<scalar_t>(B) && (T >= kBackwardMinSteps || g_tiled.load(std::memory_order_relaxed) > 0);
    const Tensor whh_pk = tiled ? pack_cols<scalar_t, 4>(whh) : Tensor();
    // Steps [s0, s1) in processing order, from the last chunk down, are times [t_lo, t_lo + n).
    for (int64_t s1 = T; s1 > 0; s1 -= chunk) {
      const int64_t s0 = std::max<int64_t>(0, s1 - chunk), n = s1 - s0, t_lo = reverse ? T - s1 : s0;
      backward_loop<scalar_t>(T, s0, s1, t_lo, B, H, P, reverse, len, ptr(Gc), ptr(Cc), ptr(c0c), ptr(gout), ptr(gG),
                              ptr(gC), ptr(dh), ptr(dc), ptr(dG), ptr(dH), ptr(Hpre), ptr(whh), ptr(whh_pk), ptr(whr),
                              ptr(dhpre), ptr(dh_new), ptr(dh_zone), ptr(Cprev), ptr(Ctil), var, ptr(Nh), ptr(rh),
                              ptr(Nc), ptr(rc), ptr(DR), ptr(LNacc), acc_rows, ln_in ? ptr(ln[4]) : nullptr, ptr(Ni),
                              ptr(ri), ptr(dZ), ptr(TCO), ptr(DCL));
      flush(t_lo, n);
    }
  });
  if (!w_ih.defined()) dx = dG;  // x was the input projection (one chunk: every step)

  // The step loop's per-thread sums: d w_hh' = Σ dG ⊙ LN(h W_hh^T), Σ dG (which is also d b_hh', d b_ih'
  // and the bias gradient), d w_c, d b_c, and the input projection's d w_ih' = Σ dG ⊙ LN(x W_ih^T).
  Tensor dhw, dhb, dcw, dcb, diw, dib;
  if (has_ln) {
    const Tensor ln_sums = LNacc.sum(0);
    dhw = ln_sums.narrow(0, 0, GH), dhb = ln_sums.narrow(0, GH, GH);
    dcw = ln_sums.narrow(0, 2 * GH, H), dcb = ln_sums.narrow(0, 2 * GH + H, H);
    if (ln_in) diw = ln_sums.narrow(0, 2 * GH + 2 * H, GH), dib = dhb;
    if (w_ih.defined() && has_bias) db = dhb;
  }
  Tensor dw_hr = proj ? at::mm(dH.view({T * B, P}).t(), Hpre.view({T * B, H})) : Tensor();
  Tensor dpeep = peep_sums.empty() ? Tensor() : peep_sums[0];
  return {dx, dh, dc, dw_ih, dw_hh, db, dw_hr, dpeep, dhw, dhb, dcw, dcb, diw, dib};
}
// A zoneout mask (see lstmkit/kernels/masks.py, which computes the same numbers with torch ops):
// entry i is True when lane i % 4 (16 bits) of splitmix64((seed + i / 4) · φ), as int16, is below
// level - 32768. Counter-based, so every chunk of the parallel loop computes its own entries and
// the result does not depend on the thread count.
Tensor sample_zone_mask(const std::vector<int64_t>& shape, int64_t level, int64_t seed) {
  TORCH_CHECK(level >= 0 && level < 65536, "sample_zone_mask: level must be in [0, 65536), got ", level);
  Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kBool));
  const int64_t n = out.numel();
  bool* o = out.data_ptr<bool>();
  const int thr = static_cast<int>(level) - 32768;
  at::parallel_for(0, (n + 3) / 4, 16384, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      uint64_t z = (static_cast<uint64_t>(seed) + static_cast<uint64_t>(q)) * 0x9E3779B97F4A7C15ULL;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      for (int64_t l = 0; l < 4 && 4 * q + l < n; ++l) o[4 * q + l] = static_cast<int16_t>(z >> (16 * l)) < thr;
    }
  });
  return out;
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit fused CPU LSTM layer: forward and hand-written backward through time";
  m.def("forward", &lstm_forward, "one LSTM layer, one direction (see lstm_fused.cpp)");
  m.def("backward", &lstm_backward, "its backward through time");
  m.def("infer", &lstm_infer, "forward only, nothing recorded, on prepared weights (no autograd)",
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("whh_t"), py::arg("bias"),
        py::arg("whr_t"), py::arg("lengths"), py::arg("reverse"), py::arg("coupled"), py::arg("peephole"),
        py::arg("h_keep"), py::arg("zone_h"), py::arg("zone_c"), py::arg("layer_norm"), py::arg("eps"),
        py::arg("whh_packed") = py::none(), py::arg("whh_cols") = py::none(), py::arg("wih_packed") = py::none());
  m.def("has_blas", [] { return blas().sgemm != nullptr && blas().dgemm != nullptr; },
        "whether per-step GEMMs call BLAS directly (else through ATen)");
  m.def("set_gemm_mode", [](const std::string& mode) {
        // "auto": loop below the size threshold, else BLAS; "loop": always the loop;
        // "blas": never the loop; "aten": never the loop, and ATen instead of direct BLAS.
        TORCH_CHECK(mode == "auto" || mode == "loop" || mode == "blas" || mode == "aten",
                    "gemm mode must be auto, loop, blas or aten, got ", mode);
        g_small_gemm = mode == "auto" ? kSmallGemmDefault : mode == "loop" ? INT64_MAX : -1;
        g_use_blas = mode != "aten";
      }, "for tests: choose the per-step GEMM path");
  m.def("set_tiled", [](const std::string& mode) {
        TORCH_CHECK(mode == "auto" || mode == "on" || mode == "off", "tiled mode must be auto, on or off, got ", mode);
        g_tiled = mode == "auto" ? 0 : mode == "on" ? 1 : -1;
      }, "for tests: the tiled step products (auto: float32 with AVX2, B >= 3; see use_tiled)");
  m.def("set_backward_chunk", [](int64_t rows) {
        TORCH_CHECK(rows >= 0, "backward chunk rows must be >= 0 (0: the default), got ", rows);
        g_backward_chunk_rows = rows;
      }, "for tests: rows per chunk of backward's step gradients (0: the default, kBackwardChunkRows)");
  m.def("uses_tiled", [](bool float64, int64_t B) { return float64 ? use_tiled<double>(B) : use_tiled<float>(B); },
        "whether a forward of this dtype and batch size runs tiled steps (set_tiled and the build decide)");
  m.def("pack_whh", [](const Tensor& whh_t, int64_t gates) {
        TORCH_CHECK(whh_t.dim() == 2 && whh_t.is_contiguous() && (gates == 3 || gates == 4) && whh_t.size(1) % gates == 0,
                    "pack_whh: expected a contiguous (P, gates·H) W_hh^T and 3 or 4 gates, got ", whh_t.sizes(), ", ", gates);
        Tensor out;
        AT_DISPATCH_FLOATING_TYPES(whh_t.scalar_type(), "lstmkit_pack_whh", [&] { out = pack_whh<scalar_t>(whh_t, gates); });
        return out;
      }, "W_hh^T packed for the tiled steps (infer's whh_packed)");
  m.def("pack_cols", [](const Tensor& m) {
        TORCH_CHECK(m.dim() == 2 && m.is_contiguous(), "pack_cols: expected a contiguous 2-d matrix, got ", m.sizes());
        Tensor out;
        AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "lstmkit_pack_cols", [&] { out = pack_cols<scalar_t, 4>(m); });
        return out;
      }, "a (K, N) matrix packed in column panels for the tiled products (infer's wih_packed: W_ih^T)");
  m.def("zone_mask", &sample_zone_mask, "a Bernoulli zoneout mask from a counter-based generator (see masks.py)");
  m.def("threads_used", [](int64_t n) {
        // How many distinct threads at::parallel_for runs n grain-1 tasks on, as the kernel's own
        // loops would: 1 when the extension was built without OpenMP, whatever set_num_threads says.
        std::vector<int> seen(static_cast<size_t>(std::max<int64_t>(n, 1)), -1);
        at::parallel_for(0, n, 1, [&](int64_t q0, int64_t q1) {
          for (int64_t q = q0; q < q1; ++q) seen[q] = at::get_thread_num();
        });
        std::sort(seen.begin(), seen.end());
        return static_cast<int64_t>(std::unique(seen.begin(), seen.end()) - seen.begin());
      }, "for tests: the number of threads the kernel's parallel loops really use");
  m.def("vector_width", [] { return static_cast<int64_t>(at::vec::Vectorized<float>::size()); },
        "floats per vector register in the elementwise passes");
}
