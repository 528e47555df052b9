// The fused CPU sLSTM kernel: one layer, one direction, forward and hand-written backward
// through time, registered as PyTorch operators lstmkit_xlstm::slstm_forward and
// lstmkit_xlstm::slstm_backward (fake kernels and autograd: lstmkit/xlstm/slstm_fused.py).
//
// Shape legend: T = steps, B = batch, H = hidden size. Buffers are time-major and contiguous.
//   xp    (T, B, 4H)  input projection x W_ih^T + b_ih + b_hh, gate order i, f, z, o (made by
//                     the caller as one GEMM, so its gradients are GEMMs of torch's autograd)
//   w_hh  (4H, H)     dense recurrent weights (the caller expands the head-wise blocks)
//   gates (T, B, 6H)  per step [i', f', z, o, ĩ, f̃]: the stabilized gates the step used, then
//                     the raw input and forget pre-activations (backward's branch of the max)
//   cs, ns, ms (T, B, H)  cell, normalizer and stabilizer after each step
//
// Equations (lstmkit/xlstm/slstm_reference.py has them in full):
//   [ĩ f̃ z̃ õ] = xp_t + h_{t-1} W_hh^T
//   log f = log σ(f̃) or f̃ (exp forget gate);  m̂ = m_{t-1} if n_{t-1} > 0 else −∞
//   m_t = max(log f + m̂, ĩ);  i' = exp(ĩ − m_t);  f' = exp(log f + m̂ − m_t)
//   c_t = f' c_{t-1} + i' tanh(z̃);  n_t = f' n_{t-1} + i';  h_t = σ(õ) c_t / n_t
//
// Forward: per step one GEMM h_{t-1} W_hh^T, then one vectorized pass over the rows (split
// across threads) that computes the cells in place. Inference (slstm_inference) runs the same
// loop recording only the output. Backward: in reverse, one pass over the rows turns
// dh_t, dc_t, dn_t, dm_t into dG[t] = d[ĩ f̃ z̃ õ] and the carried dc, dn, dm; one GEMM gives
// dh_{t-1} = dG[t] W_hh; after the loop dW_hh = dG^T H_prev is one GEMM over all steps. The max
// routes its gradient like torch.maximum (half to each side at a tie), so the kernel's
// gradients are the reference's autograd ones.
//
// Lengths (right-padded): a row is active at step t when t < length; inactive rows keep their
// state and record zeros; in reverse a row starts at its own last step.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;

template <typename T>
using Vec = at::vec::Vectorized<T>;

// e^x: in float32 at::vec's inlined polynomial exp_u20 (≤ 20 ulp, ~1e-6 relative; 0 below
// ln(FLT_MIN), so exp(−∞) = 0 as the empty-memory rule needs), as lk.LSTM's kernel does; float64
// keeps Sleef's 1-ulp exp so it can be compared to the reference at 1e-10.
template <typename T>
inline Vec<T> vexp(const Vec<T>& x) {
  if constexpr (std::is_same_v<T, float>) return x.exp_u20();
  return x.exp();
}

template <typename T>
inline Vec<T> log_sigmoid(const Vec<T>& x) {  // min(x, 0) − log1p(exp(−|x|)): no overflow either side
  return at::vec::minimum(x, Vec<T>(0)) - vexp(x.abs().neg()).log1p();
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  return Vec<T>(1) / (Vec<T>(1) + vexp(x.neg()));
}

// One row's cells for one step, vectorized over the H units (a partial vector at the tail).
// x: the row's xp (4H), r: its recurrent product (4H); h, c, n, m: its state, updated in place;
// out (H): the step's output; g (6H), cs, ns, ms (H each): its records, skipped when g is null.
template <typename T>
void cell_forward(const T* x, const T* r, T* h, T* c, T* n, T* m, T* g, T* cs, T* ns, T* ms, T* out, int64_t H,
                  bool exp_forget) {
  using V = Vec<T>;
  const V zero(0), neg_inf(-std::numeric_limits<T>::infinity());
  for (int64_t j = 0; j < H; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), H - j);
    const V ip = V::loadu(x + j, k) + V::loadu(r + j, k);
    const V fp = V::loadu(x + H + j, k) + V::loadu(r + H + j, k);
    const V zp = V::loadu(x + 2 * H + j, k) + V::loadu(r + 2 * H + j, k);
    const V op = V::loadu(x + 3 * H + j, k) + V::loadu(r + 3 * H + j, k);
    const V c_prev = V::loadu(c + j, k), n_prev = V::loadu(n + j, k), m_prev = V::loadu(m + j, k);
    const V lf = exp_forget ? fp : log_sigmoid(fp);
    const V a = lf + V::blendv(neg_inf, m_prev, n_prev > zero);  // an empty memory's m is −∞
    const V mt = at::vec::maximum(a, ip);
    const V i = vexp<T>(ip - mt), f = vexp<T>(a - mt);
    const V z = zp.tanh(), o = sigmoid(op);
    const V ct = f * c_prev + i * z, nt = f * n_prev + i;
    const V ht = o * ct / nt;
    if (g != nullptr) {
      i.store(g + j, k), f.store(g + H + j, k), z.store(g + 2 * H + j, k), o.store(g + 3 * H + j, k);
      ip.store(g + 4 * H + j, k), fp.store(g + 5 * H + j, k);
      ct.store(cs + j, k), nt.store(ns + j, k), mt.store(ms + j, k);
    }
    ht.store(out + j, k);
    ct.store(c + j, k), nt.store(n + j, k), mt.store(m + j, k), ht.store(h + j, k);
  }
}

// Loads H-vector k lanes at p + j, or zeros when p is null (an absent incoming gradient).
template <typename T>
inline Vec<T> load_or_zero(const T* p, int64_t j, int64_t k) {
  return p ? Vec<T>::loadu(p + j, k) : Vec<T>(0);
}

// One row's backward for one step. In: the records g (6H), c_t, n_t, the previous state
// (c_prev, n_prev, m_prev), the incoming gradients of the step's outputs (each may be null:
// g_out, g_g (6H), g_c, g_n, g_m) and the running ones dh, dc, dn, dm (of the state after the
// step). Out: dg (4H) = d[ĩ f̃ z̃ õ]; dc, dn, dm become the previous state's (dh is the caller's).
template <typename T>
void cell_backward(const T* g, const T* ct_, const T* nt_, const T* c_prev_, const T* n_prev_, const T* m_prev_,
                   const T* g_out, const T* g_g, const T* g_c, const T* g_n, const T* g_m, const T* dh, T* dc, T* dn,
                   T* dm, T* dg, int64_t H, bool exp_forget) {
  using V = Vec<T>;
  const V zero(0), one(1), half(0.5), neg_inf(-std::numeric_limits<T>::infinity());
  auto gg = [&](int gate, int64_t j, int64_t k) { return g_g ? V::loadu(g_g + gate * H + j, k) : zero; };
  for (int64_t j = 0; j < H; j += V::size()) {
    const int64_t k = std::min<int64_t>(V::size(), H - j);
    const V i = V::loadu(g + j, k), f = V::loadu(g + H + j, k), z = V::loadu(g + 2 * H + j, k);
    const V o = V::loadu(g + 3 * H + j, k), ip = V::loadu(g + 4 * H + j, k), fp = V::loadu(g + 5 * H + j, k);
    const V ct = V::loadu(ct_ + j, k), nt = V::loadu(nt_ + j, k);
    const V c_prev = V::loadu(c_prev_ + j, k), n_prev = V::loadu(n_prev_ + j, k), m_prev = V::loadu(m_prev_ + j, k);
    const V dht = V::loadu(dh + j, k) + load_or_zero(g_out, j, k);
    V dct = V::loadu(dc + j, k) + load_or_zero(g_c, j, k);
    V dnt = V::loadu(dn + j, k) + load_or_zero(g_n, j, k);
    const V dm_in = V::loadu(dm + j, k) + load_or_zero(g_m, j, k);
    // h = o c / n
    const V inv_n = one / nt;
    const V d_o = dht * ct * inv_n + gg(3, j, k);
    dct = dct + dht * o * inv_n;
    dnt = dnt - dht * o * ct * inv_n * inv_n;
    // c = f' c_prev + i' z,  n = f' n_prev + i'
    const V df = dct * c_prev + dnt * n_prev + gg(1, j, k);
    const V di = dct * z + dnt + gg(0, j, k);
    const V dz = dct * i + gg(2, j, k);
    // i' = exp(ĩ − m), f' = exp(a − m), m = max(a, ĩ) (torch.maximum's rule: half to each at a tie)
    const V has_prev = n_prev > zero;
    const V lf = exp_forget ? fp : log_sigmoid(fp);
    const V a = lf + V::blendv(neg_inf, m_prev, has_prev);
    const V dmt = dm_in - di * i - df * f;
    const V to_a = a.gt(ip) + half * a.eq(ip), to_i = a.lt(ip) + half * a.eq(ip);
    const V da = df * f + dmt * to_a;
    const V dip = di * i + dmt * to_i + gg(4, j, k);
    // a = log f + m̂
    const V dfp = (exp_forget ? da : da * sigmoid(fp.neg())) + gg(5, j, k);
    dip.store(dg + j, k), dfp.store(dg + H + j, k);
    (dz * (one - z * z)).store(dg + 2 * H + j, k), (d_o * o * (one - o)).store(dg + 3 * H + j, k);
    (dct * f).store(dc + j, k), (dnt * f).store(dn + j, k);
    V::blendv(zero, da, has_prev).store(dm + j, k);
  }
}

int64_t row_grain(int64_t H) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1)); }

// BLAS's Fortran GEMM, when libtorch exports it (MKL builds do): called on raw pointers it skips
// ATen's dispatch and tensor set-up, a few µs per step on the per-step products.
using sgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                          const int*, const float*, const int*, const float*, float*, const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
                          const int*, const double*, const int*, const double*, double*, const int*);

template <typename T>
auto blas_gemm() {
  using fn = std::conditional_t<std::is_same_v<T, float>, sgemm_fn, dgemm_fn>;
  static const fn f = reinterpret_cast<fn>(dlsym(RTLD_DEFAULT, std::is_same_v<T, float> ? "sgemm_" : "dgemm_"));
  return f;
}

// Per-step product C (m×n) = A (m×k) · M (k×n), all row-major and dense. Small products (streaming,
// B = 1) run as a register-blocked loop: any call costs more than the product there. Larger ones
// go to BLAS (row-major C = A·M is column-major Cᵀ = Mᵀ·Aᵀ), or ATen's GEMM without it.
constexpr int64_t kSmallGemm = 1 << 15;

template <typename T>
void step_gemm(int64_t m, int64_t n, int64_t k, const T* A, const T* M, T* C) {
  using V = Vec<T>;
  constexpr int64_t W = V::size();
  if (m * n * k > kSmallGemm) {
    if (auto gemm = blas_gemm<T>()) {
      const char no = 'N';
      const int M_ = static_cast<int>(m), N_ = static_cast<int>(n), K_ = static_cast<int>(k);
      const T one(1), zero(0);
      gemm(&no, &no, &N_, &M_, &K_, &one, M, &N_, A, &K_, &zero, C, &N_);
      return;
    }
    auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    Tensor c = at::from_blob(C, {m, n}, opts);
    at::mm_out(c, at::from_blob(const_cast<T*>(A), {m, k}, opts), at::from_blob(const_cast<T*>(M), {k, n}, opts));
    return;
  }
  for (int64_t r = 0; r < m; ++r) {
    const T* a = A + r * k;
    T* c = C + r * n;
    int64_t j = 0;
    for (; j + 4 * W <= n; j += 4 * W) {  // four vectors of C stay in registers over all of k
      V c0(T(0)), c1(T(0)), c2(T(0)), c3(T(0));
      for (int64_t p = 0; p < k; ++p) {
        const V ap(a[p]);
        const T* mr = M + p * n + j;
        c0 = at::vec::fmadd(ap, V::loadu(mr), c0), c1 = at::vec::fmadd(ap, V::loadu(mr + W), c1);
        c2 = at::vec::fmadd(ap, V::loadu(mr + 2 * W), c2), c3 = at::vec::fmadd(ap, V::loadu(mr + 3 * W), c3);
      }
      c0.store(c + j), c1.store(c + j + W), c2.store(c + j + 2 * W), c3.store(c + j + 3 * W);
    }
    for (; j < n; ++j) {
      T acc(0);
      for (int64_t p = 0; p < k; ++p) acc += a[p] * M[p * n + j];
      c[j] = acc;
    }
  }
}

// Steps in processing order, and for each row whether step t is active and its first step.
struct Steps {
  int64_t T, B;
  bool reverse;
  const int64_t* len;  // nullptr: every row runs T steps
  int64_t at(int64_t k) const { return reverse ? T - 1 - k : k; }
  bool active(int64_t t, int64_t b) const { return len == nullptr || t < len[b]; }
  // The step whose state precedes t for row b, or -1 for the initial state.
  int64_t prev(int64_t t, int64_t b) const {
    if (reverse) {
      int64_t last = len == nullptr ? T - 1 : len[b] - 1;
      return t == last ? -1 : t + 1;
    }
    return t - 1;
  }
};

Steps make_steps(int64_t T, int64_t B, bool reverse, const c10::optional<Tensor>& lengths) {
  const int64_t* len = nullptr;
  if (lengths.has_value() && lengths->defined()) {
    TORCH_CHECK(lengths->dtype() == at::kLong && lengths->device().is_cpu() && lengths->dim() == 1 &&
                    lengths->size(0) == B && lengths->is_contiguous(),
                "slstm: lengths must be a contiguous (B,) int64 CPU tensor");
    len = lengths->data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK(len[b] >= 1 && len[b] <= T, "slstm: lengths must lie in [1, ", T, "], got ", len[b]);
    }
  }
  return Steps{T, B, reverse, len};
}

void check_weights_and_state(int64_t B, int64_t H, at::ScalarType dtype, const Tensor& w_hh,
                             const std::vector<Tensor>& state) {
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * H && w_hh.size(1) == H && w_hh.scalar_type() == dtype,
              "slstm: w_hh must be (4H, H) = (", 4 * H, ", ", H, ") of the inputs' dtype");
  for (const auto& s : state) {
    TORCH_CHECK(s.dim() == 2 && s.size(0) == B && s.size(1) == H && s.is_contiguous() && s.scalar_type() == dtype,
                "slstm: every state must be a contiguous (B, H) = (", B, ", ", H, ") tensor of the inputs' dtype");
  }
}

void check_inputs(const Tensor& xp, const Tensor& w_hh, const std::vector<Tensor>& state) {
  TORCH_CHECK(xp.dim() == 3 && xp.is_contiguous() && xp.size(2) % 4 == 0,
              "slstm: xp must be a contiguous (T, B, 4H) tensor");
  check_weights_and_state(xp.size(1), xp.size(2) / 4, xp.scalar_type(), w_hh, state);
}

// The step loop of forward and inference: records into gates, cs, ns, ms unless they are undefined.
void forward_loop(const Tensor& xp, const Tensor& w_hh, Tensor& h, Tensor& c, Tensor& n, Tensor& m, Tensor& out,
                  Tensor& gates, Tensor& cs, Tensor& ns, Tensor& ms, const Steps& steps, bool exp_forget) {
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 4;
  const bool record = gates.defined();
  Tensor w_t = w_hh.t().contiguous();  // (H, 4H)
  Tensor rec = at::empty({B, 4 * H}, xp.options());
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "slstm_forward", [&] {
    using T_ = scalar_t;
    T_ *hp = h.data_ptr<T_>(), *cp = c.data_ptr<T_>(), *np_ = n.data_ptr<T_>(), *mp = m.data_ptr<T_>();
    const T_* xpp = xp.data_ptr<T_>();
    const T_* rp = rec.data_ptr<T_>();
    T_* op = out.data_ptr<T_>();
    T_* gp = record ? gates.data_ptr<T_>() : nullptr;
    T_* csp = record ? cs.data_ptr<T_>() : nullptr;
    T_* nsp = record ? ns.data_ptr<T_>() : nullptr;
    T_* msp = record ? ms.data_ptr<T_>() : nullptr;
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = steps.at(k);
      step_gemm<T_>(B, 4 * H, H, hp, w_t.data_ptr<T_>(), rec.data_ptr<T_>());  // (B, 4H) = h_{t-1} W_hh^T
      at::parallel_for(0, B, row_grain(H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = (t * B + b) * H, s = b * H;
          if (!steps.active(t, b)) {  // past the length: the state holds, the records are zero
            std::fill(op + row, op + row + H, T_(0));
            if (record) {
              std::fill(gp + (t * B + b) * 6 * H, gp + (t * B + b + 1) * 6 * H, T_(0));
              for (T_* r : {csp, nsp, msp}) std::fill(r + row, r + row + H, T_(0));
            }
            continue;
          }
          cell_forward<T_>(xpp + (t * B + b) * 4 * H, rp + b * 4 * H, hp + s, cp + s, np_ + s, mp + s,
                           record ? gp + (t * B + b) * 6 * H : nullptr, record ? csp + row : nullptr,
                           record ? nsp + row : nullptr, record ? msp + row : nullptr, op + row, H, exp_forget);
        }
      });
    }
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> slstm_forward(
    const Tensor& xp, const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0, const Tensor& m0,
    const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget) {
  check_inputs(xp, w_hh, {h0, c0, n0, m0});
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 4;
  const Steps steps = make_steps(T, B, reverse, lengths);
  // Every row of every step is written by the loop (zeros past a length).
  auto make = [&](int64_t width) { return at::empty({T, B, width}, xp.options()); };
  Tensor out = make(H), gates = make(6 * H), cs = make(H), ns = make(H), ms = make(H);
  Tensor h = h0.clone(), c = c0.clone(), n = n0.clone(), m = m0.clone();
  forward_loop(xp, w_hh, h, c, n, m, out, gates, cs, ns, ms, steps, exp_forget);
  return {out, h, c, n, m, gates, cs, ns, ms};
}

// Inference: the same steps, recording nothing but the output (no gates, c, n, m per step).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> slstm_inference(
    const Tensor& xp, const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0, const Tensor& m0,
    const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget) {
  check_inputs(xp, w_hh, {h0, c0, n0, m0});
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 4;
  const Steps steps = make_steps(T, B, reverse, lengths);
  Tensor out = at::empty({T, B, H}, xp.options());
  Tensor h = h0.clone(), c = c0.clone(), n = n0.clone(), m = m0.clone();
  Tensor none;
  forward_loop(xp, w_hh, h, c, n, m, out, none, none, none, none, steps, exp_forget);
  return {out, h, c, n, m};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> slstm_backward(
    const c10::optional<Tensor>& g_out, const c10::optional<Tensor>& g_hn, const c10::optional<Tensor>& g_cn,
    const c10::optional<Tensor>& g_nn, const c10::optional<Tensor>& g_mn, const c10::optional<Tensor>& g_gates,
    const c10::optional<Tensor>& g_cs, const c10::optional<Tensor>& g_ns, const c10::optional<Tensor>& g_ms,
    const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0, const Tensor& m0,
    const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget, const Tensor& out, const Tensor& gates,
    const Tensor& cs, const Tensor& ns, const Tensor& ms) {
  const int64_t T = out.size(0), B = out.size(1), H = out.size(2);
  TORCH_CHECK(out.is_contiguous() && gates.is_contiguous() && cs.is_contiguous() && ns.is_contiguous() &&
                  ms.is_contiguous() && gates.size(2) == 6 * H && cs.sizes() == out.sizes(),
              "slstm_backward: out, cs, ns, ms (T, B, H) and gates (T, B, 6H) must be slstm_forward's outputs");
  check_weights_and_state(B, H, out.scalar_type(), w_hh, {h0, c0, n0, m0});
  const Steps steps = make_steps(T, B, reverse, lengths);
  auto opts = out.options();
  // Running gradients of the state after the step being processed; they start as the final state's.
  auto start = [&](const c10::optional<Tensor>& g) {
    return g.has_value() && g->defined() ? g->contiguous().clone() : at::zeros({B, H}, opts);
  };
  Tensor dh = start(g_hn), dc = start(g_cn), dn = start(g_nn), dm = start(g_mn);
  // Both written row by row in the loop (zeros past a length, where h_prev must not be garbage:
  // it enters dW_hh's GEMM).
  Tensor dG = at::empty({T, B, 4 * H}, opts);
  Tensor h_prev = at::empty({T, B, H}, opts);  // h_{t-1} of every active (t, b): dW_hh's right factor
  Tensor dh_rec = at::empty({B, H}, opts);
  Tensor w = w_hh.contiguous();  // (4H, H)
  // Optional gradients made contiguous once (kept alive here while their pointers are used).
  std::vector<Tensor> keep;
  auto hold = [&](const c10::optional<Tensor>& t) -> Tensor {
    if (!t.has_value() || !t->defined()) return Tensor();
    keep.push_back(t->contiguous());
    return keep.back();
  };
  Tensor go = hold(g_out), gg = hold(g_gates), gc = hold(g_cs), gn = hold(g_ns), gm = hold(g_ms);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "slstm_backward", [&] {
    using T_ = scalar_t;
    auto p = [](const Tensor& t) -> const T_* { return t.defined() ? t.data_ptr<T_>() : nullptr; };
    const T_ *gop = p(go), *ggp = p(gg), *gcp = p(gc), *gnp = p(gn), *gmp = p(gm);
    const T_ *outp = out.data_ptr<T_>(), *gp = gates.data_ptr<T_>();
    const T_ *csp = cs.data_ptr<T_>(), *nsp = ns.data_ptr<T_>(), *msp = ms.data_ptr<T_>();
    const T_ *h0p = h0.data_ptr<T_>(), *c0p = c0.data_ptr<T_>(), *n0p = n0.data_ptr<T_>(), *m0p = m0.data_ptr<T_>();
    T_ *dhp = dh.data_ptr<T_>(), *dcp = dc.data_ptr<T_>(), *dnp = dn.data_ptr<T_>(), *dmp = dm.data_ptr<T_>();
    T_* dGp = dG.data_ptr<T_>();
    T_* hpp = h_prev.data_ptr<T_>();
    const T_* drp = dh_rec.data_ptr<T_>();
    for (int64_t k = T - 1; k >= 0; --k) {
      const int64_t t = steps.at(k);
      at::parallel_for(0, B, row_grain(H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = (t * B + b) * H;
          if (!steps.active(t, b)) {
            std::fill(dGp + (t * B + b) * 4 * H, dGp + (t * B + b + 1) * 4 * H, T_(0));
            std::fill(hpp + row, hpp + row + H, T_(0));
            continue;
          }
          const int64_t tp = steps.prev(t, b);
          const T_* hprev = tp < 0 ? h0p + b * H : outp + (tp * B + b) * H;
          const T_* cprev = tp < 0 ? c0p + b * H : csp + (tp * B + b) * H;
          const T_* nprev = tp < 0 ? n0p + b * H : nsp + (tp * B + b) * H;
          const T_* mprev = tp < 0 ? m0p + b * H : msp + (tp * B + b) * H;
          const int64_t g_row = (t * B + b) * 6 * H;
          std::copy(hprev, hprev + H, hpp + row);
          cell_backward<T_>(gp + g_row, csp + row, nsp + row, cprev, nprev, mprev, gop ? gop + row : nullptr,
                            ggp ? ggp + g_row : nullptr, gcp ? gcp + row : nullptr, gnp ? gnp + row : nullptr,
                            gmp ? gmp + row : nullptr, dhp + b * H, dcp + b * H, dnp + b * H, dmp + b * H,
                            dGp + (t * B + b) * 4 * H, H, exp_forget);
        }
      });
      step_gemm<T_>(B, H, 4 * H, dGp + t * B * 4 * H, w.data_ptr<T_>(), dh_rec.data_ptr<T_>());  // (B, H) = dG[t] W_hh
      for (int64_t b = 0; b < B; ++b) {
        if (steps.active(t, b)) std::copy(drp + b * H, drp + (b + 1) * H, dhp + b * H);
      }
    }
  });
  Tensor dw_hh = at::mm(dG.reshape({T * B, 4 * H}).t(), h_prev.reshape({T * B, H}));  // (4H, H)
  return {dG, dw_hh, dh, dc, dn, dm};
}

}  // namespace

TORCH_LIBRARY(lstmkit_xlstm, m) {
  m.def(
      "slstm_forward(Tensor xp, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, Tensor? lengths, "
      "bool reverse, bool exp_forget) -> (Tensor out, Tensor h_n, Tensor c_n, Tensor n_n, Tensor m_n, "
      "Tensor gates, Tensor cs, Tensor ns, Tensor ms)");
  m.def(
      "slstm_inference(Tensor xp, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, Tensor? lengths, "
      "bool reverse, bool exp_forget) -> (Tensor out, Tensor h_n, Tensor c_n, Tensor n_n, Tensor m_n)");
  m.def(
      "slstm_backward(Tensor? g_out, Tensor? g_hn, Tensor? g_cn, Tensor? g_nn, Tensor? g_mn, Tensor? g_gates, "
      "Tensor? g_cs, Tensor? g_ns, Tensor? g_ms, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, "
      "Tensor? lengths, bool reverse, bool exp_forget, Tensor out, Tensor gates, Tensor cs, Tensor ns, Tensor ms) "
      "-> (Tensor d_xp, Tensor d_w_hh, Tensor d_h0, Tensor d_c0, Tensor d_n0, Tensor d_m0)");
}

TORCH_LIBRARY_IMPL(lstmkit_xlstm, CPU, m) {
  m.impl("slstm_forward", &slstm_forward);
  m.impl("slstm_inference", &slstm_inference);
  m.impl("slstm_backward", &slstm_backward);
}
