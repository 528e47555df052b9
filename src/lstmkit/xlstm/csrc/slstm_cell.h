// The sLSTM cell on at::vec lanes: one step forward for a block of units, one step backward for
// a row. Part of the fused sLSTM kernel: see slstm_fused.cpp for the overview and the legend.
// The vector helpers (Vec, vexp, vsigmoid, vtanh) are lk.LSTM's kernel's (kernels/csrc).
#pragma once

#include "../../kernels/csrc/tiles.h"

#include <limits>

namespace lstmkit {
namespace slstm {
namespace {

// log1p(e) for e in [0, 1]. float32: 2 atanh(s) with s = e / (2 + e) ≤ 1/3, as its odd series to
// s^13 (truncation < 1e-8 relative; s keeps e's relative precision where e is tiny), inlined: it
// replaced Sleef's log1p call, which took ~15% of a step's cell maths. float64 keeps Sleef's.
template <typename T>
inline Vec<T> log1p_unit(const Vec<T>& e) {
  if constexpr (std::is_same_v<T, float>) {
    using V = Vec<T>;
    const V s = e / (V(2.f) + e), s2 = s * s;
    V p(1.f / 13);
    for (const float c : {1.f / 11, 1.f / 9, 1.f / 7, 1.f / 5, 1.f / 3, 1.f}) p = at::vec::fmadd(p, s2, V(c));
    return V(2.f) * s * p;
  }
  return e.log1p();
}

template <typename T>
inline Vec<T> log_sigmoid(const Vec<T>& x) {  // min(x, 0) − log1p(exp(−|x|)): no overflow either side
  return at::vec::minimum(x, Vec<T>(T(0))) - log1p_unit(vexp(x.abs().neg()));
}

// k lanes at p: a full vector when k is the width (the tiles' common case), else a partial load
// (zeros past k) or store.
template <typename T>
inline Vec<T> load(const T* p, int64_t k) {
  return k == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, k);
}
template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t k) {
  if (k == Vec<T>::size()) v.store(p); else v.store(p, k);
}

// Where one row's step writes, each pointer at the block's first unit; the records (REC) are
// g (6H: [i', f', z, o, ĩ, f̃] at gate stride H), cs, ns, ms.
template <typename T>
struct CellOut {
  T *c, *n, *m;  // the state, updated in place
  T *h;          // the carried h_t
  T *out;        // the step's output row
  T *g, *cs, *ns, *ms;
};

// One step of k ≤ width units from their pre-activations ĩ f̃ z̃ õ (x W_ih^T + b + h W_hh^T).
template <typename T, bool REC>
inline void cell_lanes(const Vec<T>& ip, const Vec<T>& fp, const Vec<T>& zp, const Vec<T>& op, const CellOut<T>& s,
                       int64_t H, int64_t k, bool exp_forget) {
  using V = Vec<T>;
  const V zero(T(0)), neg_inf(-std::numeric_limits<T>::infinity());
  const V c_prev = load(s.c, k), n_prev = load(s.n, k), m_prev = load(s.m, k);
  const V lf = exp_forget ? fp : log_sigmoid(fp);
  const V a = lf + V::blendv(neg_inf, m_prev, n_prev > zero);  // an empty memory's m is −∞
  const V mt = at::vec::maximum(a, ip);
  const V i = vexp<T>(ip - mt), f = vexp<T>(a - mt);
  const V z = vtanh(zp), e_o = vexp<T>(op.neg());  // o = σ(õ) = 1 / (1 + e_o)
  const V ct = at::vec::fmadd(f, c_prev, i * z), nt = at::vec::fmadd(f, n_prev, i);
  const V ht = ct / (nt * (V(T(1)) + e_o));  // o c / n in one division (inference needs no o)
  if (REC) {
    const V o = V(T(1)) / (V(T(1)) + e_o);
    store(i, s.g, k), store(f, s.g + H, k), store(z, s.g + 2 * H, k), store(o, s.g + 3 * H, k);
    store(ip, s.g + 4 * H, k), store(fp, s.g + 5 * H, k);
    store(ct, s.cs, k), store(nt, s.ns, k), store(mt, s.ms, k);
  }
  store(ht, s.out, k), store(ht, s.h, k);
  store(ct, s.c, k), store(nt, s.n, k), store(mt, s.m, k);
}

// A row's step past its length: the state holds (h copied from h_prev), the output and the
// records are zero.
template <typename T, bool REC>
inline void cell_inactive(const T* h_prev, const CellOut<T>& s, int64_t H, int64_t k) {
  if (s.h != h_prev) std::memcpy(s.h, h_prev, sizeof(T) * k);
  std::fill(s.out, s.out + k, T(0));
  if (REC) {
    for (int64_t q = 0; q < 6; ++q) std::fill(s.g + q * H, s.g + q * H + k, T(0));
    for (T* r : {s.cs, s.ns, s.ms}) std::fill(r, r + k, T(0));
  }
}

// Loads k lanes at p + j, or zeros when p is null (an absent incoming gradient).
template <typename T>
inline Vec<T> load_or_zero(const T* p, int64_t j, int64_t k) {
  return p ? Vec<T>::loadu(p + j, k) : Vec<T>(T(0));
}

// One row's backward for one step. In: the records g (6H), c_t, n_t, the previous state
// (c_prev, n_prev, m_prev), the incoming gradients of the step's outputs (each may be null:
// g_out, g_g (6H), g_c, g_n, g_m) and the running ones dh, dc, dn, dm (of the state after the
// step). Out: dg (4H) = d[ĩ f̃ z̃ õ]; dc, dn, dm become the previous state's (dh is the caller's).
template <typename T>
void cell_backward_row(const T* g, const T* ct_, const T* nt_, const T* c_prev_, const T* n_prev_, const T* m_prev_,
                       const T* g_out, const T* g_g, const T* g_c, const T* g_n, const T* g_m, const T* dh, T* dc,
                       T* dn, T* dm, T* dg, int64_t H, bool exp_forget) {
  using V = Vec<T>;
  const V zero(T(0)), one(T(1)), half(T(0.5)), neg_inf(-std::numeric_limits<T>::infinity());
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
    const V dfp = (exp_forget ? da : da * vsigmoid(fp.neg())) + gg(5, j, k);
    dip.store(dg + j, k), dfp.store(dg + H + j, k);
    (dz * (one - z * z)).store(dg + 2 * H + j, k), (d_o * o * (one - o)).store(dg + 3 * H + j, k);
    (dct * f).store(dc + j, k), (dnt * f).store(dn + j, k);
    V::blendv(zero, da, has_prev).store(dm + j, k);
  }
}

}  // namespace
}  // namespace slstm
}  // namespace lstmkit
