// The fused CPU LSTM kernel: one layer, one direction, forward and hand-written backward
// through time. Bound to Python by lstmkit/kernels/fused.py (torch.autograd.Function).
//
// Shape legend: T = steps, B = batch, I = input features, H = hidden size (cell and gates),
// P = size of h (proj_size if > 0, else H). All buffers are time-major and contiguous;
// gates are packed (T, B, 4H) in torch's order i, f, g, o.
//
// Equations (DESIGN.md's table, code letters):
//   [i f g o]_t = act(X_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)   act = σ, σ, tanh, σ
//   c_t = f ⊙ c_{t-1} + i ⊙ g
//   h_t = o ⊙ tanh(c_t)            (then h_t W_hr^T when projecting)
//
// Forward: the input projection of all steps is one GEMM into G; per step one recurrent GEMM
// adds h_{t-1} W_hh^T into G[t] and one fused pass applies the activations in place, so G
// ends up holding the activated gates: exactly what backward needs and what return_gates
// returns. C keeps every cell state.
//
// Backward: in reverse, a fused pass turns dh_t, dc_t into the pre-activation gradients
// dG[t] (T, B, 4H), and one GEMM per step gives dh_{t-1} = dG[t] W_hh. The weight, bias and
// input gradients are then single GEMMs over all T·B rows.
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

// Per-step product C (m×n) = [C +] A (m×k, lda) · M (k×n, row-major contiguous).
template <typename scalar_t>
void step_gemm(int64_t m, int64_t n, int64_t k, const scalar_t* A, int64_t lda, const scalar_t* M,
               scalar_t* C, bool accumulate) {
  if (m * n * k <= g_small_gemm.load(std::memory_order_relaxed)) {
    for (int64_t r = 0; r < m; ++r) {
      scalar_t* __restrict__ c = C + r * n;
      if (!accumulate) std::fill(c, c + n, scalar_t(0));
      const scalar_t* a = A + r * lda;
      for (int64_t p = 0; p < k; ++p) {
        const scalar_t ap = a[p];
        const scalar_t* __restrict__ mrow = M + p * n;
        for (int64_t j = 0; j < n; ++j) c[j] += ap * mrow[j];
      }
    }
    return;
  }
  gemm<scalar_t>(false, false, m, n, k, scalar_t(1), A, lda, M, n, accumulate ? scalar_t(1) : scalar_t(0), C, n);
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

// Rows per parallel chunk: enough work per thread to pay for waking it.
inline int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

inline bool row_active(const int64_t* len, int64_t b, int64_t t) { return len == nullptr || t < len[b]; }

// The step a row starts from, and hence where h0/c0 enter: 0 forward, its last step in reverse.
inline int64_t row_start(const int64_t* len, int64_t b, int64_t T, bool reverse) {
  if (!reverse) return 0;
  return (len ? len[b] : T) - 1;
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename scalar_t>
void forward_loop(int64_t T, int64_t B, int64_t H, int64_t P, bool reverse, const int64_t* len,
                  scalar_t* G,            // (T, B, 4H) in: input projection; out: activated gates
                  scalar_t* C,            // (T, B, H) out
                  scalar_t* out,          // (T, B, P) out
                  scalar_t* hs,           // (B, P) in: h0, out: h_n
                  scalar_t* cs,           // (B, H) in: c0, out: c_n
                  const scalar_t* whh_t,  // (P, 4H) = W_hh^T
                  const scalar_t* whr_t,  // (H, P) = W_hr^T or null
                  scalar_t* hpre) {       // (B, H) scratch when projecting
  const int64_t G4 = 4 * H;
  const bool proj = whr_t != nullptr;
  constexpr int64_t V = Vec<scalar_t>::size();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    scalar_t* Gt = G + t * B * G4;
    scalar_t* Ct = C + t * B * H;
    scalar_t* Ot = out + t * B * P;
    step_gemm<scalar_t>(B, G4, P, hs, P, whh_t, Gt, /*accumulate=*/true);  // G[t] += h W_hh^T
    at::parallel_for(0, B, row_grain(G4), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* g = Gt + b * G4;
        scalar_t* c_row = Ct + b * H;
        scalar_t* h_dst = proj ? hpre + b * H : Ot + b * P;
        if (!row_active(len, b, t)) {
          std::fill(g, g + G4, scalar_t(0));
          std::fill(c_row, c_row + H, scalar_t(0));
          std::fill(h_dst, h_dst + H, scalar_t(0));
          continue;
        }
        scalar_t* c = cs + b * H;
        int64_t j = 0;
        for (; j + V <= H; j += V) {
          auto i = vsigmoid(Vec<scalar_t>::loadu(g + j));
          auto f = vsigmoid(Vec<scalar_t>::loadu(g + H + j));
          auto gg = vtanh(Vec<scalar_t>::loadu(g + 2 * H + j));
          auto o = vsigmoid(Vec<scalar_t>::loadu(g + 3 * H + j));
          auto cn = f * Vec<scalar_t>::loadu(c + j) + i * gg;
          auto h = o * vtanh(cn);
          i.store(g + j);
          f.store(g + H + j);
          gg.store(g + 2 * H + j);
          o.store(g + 3 * H + j);
          cn.store(c + j);
          cn.store(c_row + j);
          h.store(h_dst + j);
        }
        for (; j < H; ++j) {
          const scalar_t i = ssigmoid(g[j]), f = ssigmoid(g[H + j]);
          const scalar_t gg = std::tanh(g[2 * H + j]), o = ssigmoid(g[3 * H + j]);
          const scalar_t cn = f * c[j] + i * gg;
          g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
          c[j] = cn, c_row[j] = cn;
          h_dst[j] = o * std::tanh(cn);
        }
        if (!proj) std::memcpy(hs + b * P, h_dst, sizeof(scalar_t) * P);
      }
    });
    if (proj) {
      // Inactive rows of hpre are zero, so their projected outputs are zero too.
      step_gemm<scalar_t>(B, P, H, hpre, H, whr_t, Ot, /*accumulate=*/false);  // h = hpre W_hr^T
      for (int64_t b = 0; b < B; ++b)
        if (row_active(len, b, t)) std::memcpy(hs + b * P, Ot + b * P, sizeof(scalar_t) * P);
    }
  }
}

// Returns {out (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,4H) activated i|f|g|o, c (T,B,H)}.
std::vector<Tensor> lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                 const Tensor& w_hh, const optional<Tensor>& b_ih, const optional<Tensor>& b_hh,
                                 const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse) {
  at::AutoDispatchBelowADInplaceOrView guard;  // plain tensors in, plain tensors out: no autograd here
  TORCH_CHECK(x.dim() == 3, "fused lstm: expected x of shape (T, B, I), got ", x.sizes());
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t G4 = w_ih.size(0), H = G4 / 4, P = w_hh.size(1);
  TORCH_CHECK(w_ih.size(1) == I, "fused lstm: weight_ih is ", w_ih.sizes(), " for input size ", I);
  TORCH_CHECK(w_hh.size(0) == G4, "fused lstm: weight_hh is ", w_hh.sizes(), ", expected (", G4, ", P)");
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({B, P}), "fused lstm: h0 is ", h0.sizes(), ", expected (", B, ", ", P, ")");
  TORCH_CHECK(c0.sizes() == at::IntArrayRef({B, H}), "fused lstm: c0 is ", c0.sizes(), ", expected (", B, ", ", H, ")");
  const bool proj = w_hr.has_value() && w_hr->defined();
  TORCH_CHECK(proj || P == H, "fused lstm: weight_hh has ", P, " columns but hidden size is ", H, " and no weight_hr");
  const int64_t* len = nullptr;
  Tensor len_c;
  if (lengths.has_value() && lengths->defined()) {
    len_c = lengths->to(at::kLong).contiguous();
    TORCH_CHECK(len_c.numel() == B, "fused lstm: lengths has ", len_c.numel(), " entries for batch ", B);
    len = len_c.data_ptr<int64_t>();
  }

  auto opts = x.options();
  Tensor G = at::empty({T, B, G4}, opts);
  Tensor G2 = G.view({T * B, G4});
  Tensor x2 = x.contiguous().view({T * B, I});
  const bool has_bias = b_ih.has_value() && b_ih->defined();
  if (has_bias) {
    Tensor bias = *b_ih;
    if (b_hh.has_value() && b_hh->defined()) bias = bias + *b_hh;
    at::addmm_out(G2, bias, x2, w_ih.t());  // all steps' X W_ih^T + b in one GEMM
  } else {
    at::mm_out(G2, x2, w_ih.t());
  }
  Tensor C = at::empty({T, B, H}, opts);
  Tensor out = at::empty({T, B, P}, opts);
  Tensor hs = h0.contiguous().clone();
  Tensor cs = c0.contiguous().clone();
  Tensor whh_t = w_hh.t().contiguous();                              // (P, 4H)
  Tensor whr_t = proj ? w_hr->t().contiguous() : Tensor();          // (H, P)
  Tensor hpre = proj ? at::empty({B, H}, opts) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_forward", [&] {
    forward_loop<scalar_t>(T, B, H, P, reverse, len, G.data_ptr<scalar_t>(), C.data_ptr<scalar_t>(),
                           out.data_ptr<scalar_t>(), hs.data_ptr<scalar_t>(), cs.data_ptr<scalar_t>(),
                           whh_t.data_ptr<scalar_t>(), proj ? whr_t.data_ptr<scalar_t>() : nullptr,
                           proj ? hpre.data_ptr<scalar_t>() : nullptr);
  });
  return {out, hs, cs, G, C};
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename scalar_t>
void backward_loop(int64_t T, int64_t B, int64_t H, int64_t P, bool reverse, const int64_t* len,
                   const scalar_t* G,      // (T, B, 4H) activated gates
                   const scalar_t* C,      // (T, B, H)
                   const scalar_t* c0,     // (B, H)
                   const scalar_t* gout,   // (T, B, P) or null
                   const scalar_t* gG,     // (T, B, 4H) gradient w.r.t. the returned gates, or null
                   const scalar_t* gC,     // (T, B, H) gradient w.r.t. the returned cell states, or null
                   scalar_t* dh,           // (B, P) in: dL/dh_n, out: dL/dh0
                   scalar_t* dc,           // (B, H) in: dL/dc_n, out: dL/dc0
                   scalar_t* dG,           // (T, B, 4H) out: pre-activation gradients
                   scalar_t* dH,           // (T, B, P) out when projecting (dL/dh_t), else (B, H) scratch
                   scalar_t* Hpre,         // (T, B, H) out when projecting: o ⊙ tanh(c), else null
                   const scalar_t* whh,    // (4H, P)
                   const scalar_t* whr,    // (P, H) or null
                   scalar_t* dhpre,        // (B, H) scratch when projecting
                   scalar_t* dh_new) {     // (B, P) scratch
  const int64_t G4 = 4 * H;
  const bool proj = whr != nullptr;
  constexpr int64_t V = Vec<scalar_t>::size();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = reverse ? T - 1 - s : s;
    // dL/dh_t = carry from step t+1 (in processing order) + the output's own gradient.
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
    }
    const scalar_t* dhp = dht;  // dL/d(o ⊙ tanh c), (B, H)
    if (proj) {
      step_gemm<scalar_t>(B, H, P, dht, P, whr, dhpre, /*accumulate=*/false);  // dh_t W_hr
      dhp = dhpre;
    }
    const scalar_t* Gt = G + t * B * G4;
    const scalar_t* Ct = C + t * B * H;
    scalar_t* dGt = dG + t * B * G4;
    at::parallel_for(0, B, row_grain(G4), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* dg = dGt + b * G4;
        scalar_t* hp = proj ? Hpre + (t * B + b) * H : nullptr;
        if (!row_active(len, b, t)) {
          std::fill(dg, dg + G4, scalar_t(0));
          if (hp) std::fill(hp, hp + H, scalar_t(0));
          continue;
        }
        const scalar_t* g = Gt + b * G4;
        const scalar_t* c = Ct + b * H;
        // c_{t-1}: c0 at the row's first step, else the neighbouring step's cell state.
        const scalar_t* cp = t == row_start(len, b, T, reverse) ? c0 + b * H
                                                                : C + ((reverse ? t + 1 : t - 1) * B + b) * H;
        const scalar_t* dhr = dhp + b * H;
        scalar_t* dcr = dc + b * H;
        const scalar_t* gg_ = gG ? gG + (t * B + b) * G4 : nullptr;
        const scalar_t* gc_ = gC ? gC + (t * B + b) * H : nullptr;
        int64_t j = 0;
        using VT = Vec<scalar_t>;
        const VT one(scalar_t(1));
        for (; j + V <= H; j += V) {
          auto i = VT::loadu(g + j), f = VT::loadu(g + H + j), gv = VT::loadu(g + 2 * H + j),
               o = VT::loadu(g + 3 * H + j);
          auto cv = VT::loadu(c + j);
          auto tc = vtanh(cv);
          auto dhv = VT::loadu(dhr + j);
          auto dcv = VT::loadu(dcr + j) + dhv * o * (one - tc * tc);
          if (gc_) dcv = dcv + VT::loadu(gc_ + j);
          auto di = dcv * gv, df = dcv * VT::loadu(cp + j), dgg = dcv * i, dov = dhv * tc;
          if (gg_) {
            di = di + VT::loadu(gg_ + j);
            df = df + VT::loadu(gg_ + H + j);
            dgg = dgg + VT::loadu(gg_ + 2 * H + j);
            dov = dov + VT::loadu(gg_ + 3 * H + j);
          }
          (di * i * (one - i)).store(dg + j);
          (df * f * (one - f)).store(dg + H + j);
          (dgg * (one - gv * gv)).store(dg + 2 * H + j);
          (dov * o * (one - o)).store(dg + 3 * H + j);
          (dcv * f).store(dcr + j);
          if (hp) (o * tc).store(hp + j);
        }
        for (; j < H; ++j) {
          const scalar_t i = g[j], f = g[H + j], gv = g[2 * H + j], o = g[3 * H + j];
          const scalar_t tc = std::tanh(c[j]);
          scalar_t dcv = dcr[j] + dhr[j] * o * (1 - tc * tc);
          if (gc_) dcv += gc_[j];
          scalar_t di = dcv * gv, df = dcv * cp[j], dgg = dcv * i, dov = dhr[j] * tc;
          if (gg_) di += gg_[j], df += gg_[H + j], dgg += gg_[2 * H + j], dov += gg_[3 * H + j];
          dg[j] = di * i * (1 - i);
          dg[H + j] = df * f * (1 - f);
          dg[2 * H + j] = dgg * (1 - gv * gv);
          dg[3 * H + j] = dov * o * (1 - o);
          dcr[j] = dcv * f;
          if (hp) hp[j] = o * tc;
        }
      }
    });
    step_gemm<scalar_t>(B, P, G4, dGt, G4, whh, dh_new, /*accumulate=*/false);  // dh_{t-1} = dG[t] W_hh
    // Rows that did not run at step t pass their carried gradient through unchanged.
    for (int64_t b = 0; b < B; ++b) {
      if (row_active(len, b, t)) std::memcpy(dh + b * P, dh_new + b * P, sizeof(scalar_t) * P);
    }
  }
}

inline Tensor opt(const optional<Tensor>& t) { return t.has_value() && t->defined() ? t->contiguous() : Tensor(); }

// Returns {dx, dh0, dc0, dw_ih, dw_hh, db (for both b_ih and b_hh), dw_hr}; undefined where not applicable.
std::vector<Tensor> lstm_backward(const optional<Tensor>& grad_out, const optional<Tensor>& grad_hn,
                                  const optional<Tensor>& grad_cn, const optional<Tensor>& grad_gates,
                                  const optional<Tensor>& grad_c, const Tensor& x, const Tensor& h0,
                                  const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, bool has_bias,
                                  const optional<Tensor>& w_hr, const optional<Tensor>& lengths, bool reverse,
                                  const Tensor& out, const Tensor& G, const Tensor& C, bool need_dx) {
  at::AutoDispatchBelowADInplaceOrView guard;
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t G4 = w_ih.size(0), H = G4 / 4, P = w_hh.size(1);
  const bool proj = w_hr.has_value() && w_hr->defined();
  const int64_t* len = nullptr;
  Tensor len_c;
  if (lengths.has_value() && lengths->defined()) {
    len_c = lengths->to(at::kLong).contiguous();
    len = len_c.data_ptr<int64_t>();
  }
  auto opts = x.options();
  Tensor gout = opt(grad_out), gG = opt(grad_gates), gC = opt(grad_c);
  Tensor dh = grad_hn.has_value() && grad_hn->defined() ? grad_hn->contiguous().clone() : at::zeros({B, P}, opts);
  Tensor dc = grad_cn.has_value() && grad_cn->defined() ? grad_cn->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor dG = at::empty({T, B, G4}, opts);
  Tensor dH = proj ? at::empty({T, B, P}, opts) : at::empty({B, H}, opts);
  Tensor Hpre = proj ? at::empty({T, B, H}, opts) : Tensor();
  Tensor dhpre = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dh_new = at::empty({B, P}, opts);
  Tensor whh = w_hh.contiguous();
  Tensor whr = proj ? w_hr->contiguous() : Tensor();
  Tensor Gc = G.contiguous(), Cc = C.contiguous(), c0c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_backward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    backward_loop<scalar_t>(T, B, H, P, reverse, len, ptr(Gc), ptr(Cc), ptr(c0c), ptr(gout), ptr(gG), ptr(gC),
                            ptr(dh), ptr(dc), ptr(dG), ptr(dH), ptr(Hpre), ptr(whh), ptr(whr), ptr(dhpre),
                            ptr(dh_new));
  });

  // Gradients of the weights, biases and input: single GEMMs over all T·B rows.
  Tensor dG2 = dG.view({T * B, G4});
  Tensor x2 = x.contiguous().view({T * B, I});
  Tensor dx = need_dx ? at::mm(dG2, w_ih).view({T, B, I}) : Tensor();
  Tensor dw_ih = at::mm(dG2.t(), x2);
  Tensor db = has_bias ? dG2.sum(0) : Tensor();
  // dW_hh = Σ_t dG[t]^T h_{t-1}. h_{t-1} is the neighbouring step's output, except at a row's
  // first step where it is h0; outputs past a length are zero and dG there is zero, so the
  // shifted product is exact and only the first steps need the h0 term.
  Tensor out_c = out.contiguous();
  Tensor dw_hh = at::zeros({G4, P}, opts);
  if (T > 1) {
    Tensor dG_cur = reverse ? dG.narrow(0, 0, T - 1) : dG.narrow(0, 1, T - 1);
    Tensor h_prev = reverse ? out_c.narrow(0, 1, T - 1) : out_c.narrow(0, 0, T - 1);
    dw_hh.addmm_(dG_cur.reshape({(T - 1) * B, G4}).t(), h_prev.reshape({(T - 1) * B, P}));
  }
  Tensor dG_first;  // (B, 4H): each row's gradient at its first step
  if (!reverse) {
    dG_first = dG[0];
  } else if (len == nullptr) {
    dG_first = dG[T - 1];
  } else {
    Tensor idx = (len_c - 1).clamp_min(0).view({1, B, 1}).expand({1, B, G4});
    dG_first = dG.gather(0, idx).squeeze(0).mul_((len_c > 0).to(dG.scalar_type()).unsqueeze(1));
  }
  dw_hh.addmm_(dG_first.t(), h0.contiguous());
  Tensor dw_hr = proj ? at::mm(dH.view({T * B, P}).t(), Hpre.view({T * B, H})) : Tensor();
  return {dx, dh, dc, dw_ih, dw_hh, db, dw_hr};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit fused CPU LSTM layer: forward and hand-written backward through time";
  m.def("forward", &lstm_forward, "one LSTM layer, one direction (see lstm_fused.cpp)");
  m.def("backward", &lstm_backward, "its backward through time");
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
  m.def("vector_width", [] { return static_cast<int64_t>(at::vec::Vectorized<float>::size()); },
        "floats per vector register in the elementwise passes");
}
