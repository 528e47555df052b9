// The cell: every equation of every variant, forward and backward, for one row of hidden units,
// LayerNorm's included (row statistics, normalized projections, h̃ = o ⊙ tanh(LN(c̃)·w_c + b_c), their backward).
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "masks.h"

namespace lstmkit {
namespace {

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

// y = LN(z)·w + b over one row of n, written to out (out += y when accumulate; out may be z):
// the input projection's LayerNorm (in place) and the recurrent one (added into G[t]). Writes
// LN(z) to nrm when recording (else null) and returns its 1/σ.
template <typename S>
inline S ln_affine_row(const S* z, int64_t n, const S* w, const S* b, double eps, S* nrm, S* out, bool accumulate) {
  const auto m = ln_moments(z, n, eps);
  for_lanes<S>(n, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV nv = (ld<VV>(z + q) - VV(m.mean)) * VV(m.r);
    if (nrm) st(nv, nrm + q);
    const VV y = nv * ld<VV>(w + q) + ld<VV>(b + q);
    st(accumulate ? ld<VV>(out + q) + y : y, out + q);
  });
  return m.r;
}

// The LayerNorm cell's last equation, after cell_forward left c̃_t in ctl:
// h̃_t = o_t ⊙ tanh(LN(c̃_t)·w_c + b_c), then zoneout of h (zh, null without) lerping back to
// h_{t-1}. Writes LN(c̃_t) to nrm when recording; returns its 1/σ.
template <typename S>
inline S ln_cell_finish(const S* ctl, const S* o, int64_t H, const S* w_c, const S* b_c, double eps, const S* zh,
                        const S* hprev, S* nrm, S* h_dst) {
  const auto m = ln_moments(ctl, H, eps);
  for_lanes<S>(H, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV nv = (ld<VV>(ctl + q) - VV(m.mean)) * VV(m.r);
    if (nrm) st(nv, nrm + q);
    VV h = ld<VV>(o + q) * tnh(nv * ld<VV>(w_c + q) + ld<VV>(b_c + q));
    if (zh) h = h + ld<VV>(zh + q) * (ld<VV>(hprev + q) - h);
    st(h, h_dst + q);
  });
  return m.r;
}

// Backward of ln_cell_finish, from dL/dh̃ (dhr) back to c̃: writes tanh(LN(c̃)·w_c + b_c) to tco
// and dL/dc̃ to dcl (both read by cell_backward), and adds the gain's and bias's gradients into
// acc_w, acc_b. nrm, r: the recorded LN(c̃) and its 1/σ.
template <typename S>
inline void ln_cell_finish_backward(const S* dhr, const S* o, const S* nrm, S r, int64_t H, const S* w_c,
                                    const S* b_c, S* acc_w, S* acc_b, S* tco, S* dcl) {
  LaneSum<S> s1, s2;  // LN's backward sums of dcl = d ⊙ w_c
  for_lanes<S>(H, [&](auto tag, int64_t q) {
    using VV = decltype(tag);
    const VV cw = ld<VV>(w_c + q);
    const VV ncv = ld<VV>(nrm + q);
    const VV tc = tnh(ncv * cw + ld<VV>(b_c + q));
    const VV d = ld<VV>(dhr + q) * ld<VV>(o + q) * (VV(S(1)) - tc * tc);
    const VV dn = d * cw;
    st(tc, tco + q);
    st(ld<VV>(acc_w + q) + d * ncv, acc_w + q);  // d w_c += d ⊙ LN(c̃)
    st(ld<VV>(acc_b + q) + d, acc_b + q);        // d b_c += d
    st(dn, dcl + q);
    s1.add(dn);
    s2.add(dn * ncv);
  });
  ln_row_backward_finish(dcl, nrm, r, s1.total(), s2.total(), H, dcl);
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

// cell_forward's plain cell (VAR = false: no variant) for R rows at the same full vector block j,
// each statement across the R rows before the next: a row's cell is one long chain of dependent
// latencies (two exponentials and two divisions deep), so one row at a time leaves the vector
// units waiting; R independent chains side by side overlap. Every lane runs cell_forward's
// operations in cell_forward's order, so the results are the same bit for bit. g, c, c_row,
// h_dst: each row's pointers as cell_forward takes them (c_row only when REC).
template <int R, bool REC, typename S>
inline void cell_forward_rows(const Layout<S>& k, int64_t j, S* const* g, const S* bias, S* const* c,
                              S* const* c_row, S* const* h_dst) {
  using V = Vec<S>;
  V cp[R], i[R], f[R], gg[R], o[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    cp[r] = V::loadu(c[r] + j);
    i[r] = V::loadu(g[r] + k.oi + j);
    f[r] = V::loadu(g[r] + k.of + j);
    gg[r] = V::loadu(g[r] + k.og + j);
    o[r] = V::loadu(g[r] + k.oo + j);
  }
  if (bias) {
    const V bi = V::loadu(bias + k.oi + j), bf = V::loadu(bias + k.of + j), bg = V::loadu(bias + k.og + j),
            bo = V::loadu(bias + k.oo + j);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) i[r] = i[r] + bi, f[r] = f[r] + bf, gg[r] = gg[r] + bg, o[r] = o[r] + bo;
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) i[r] = sgm(i[r]);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) f[r] = sgm(f[r]);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) gg[r] = tnh(gg[r]);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) o[r] = sgm(o[r]);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const V cn = f[r] * cp[r] + i[r] * gg[r];
    cp[r] = cn;
    if (REC) {
      st(i[r], g[r] + k.oi + j);
      st(f[r], g[r] + k.of + j);
      st(gg[r], g[r] + k.og + j);
      st(o[r], g[r] + k.oo + j);
      st(cn, c_row[r] + j);
    }
    st(cn, c[r] + j);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) st(o[r] * tnh(cp[r]), h_dst[r] + j);
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

}  // namespace
}  // namespace lstmkit
