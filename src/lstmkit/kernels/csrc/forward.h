// Forward through time: the step loops (tiled and by rows) and forward_impl, shared by recording and inference.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "layer_args.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// Forward

// h_{t-1} as the step's recurrent product reads it: with recurrent dropout only that product sees
// the masked h (entries [q0, q1) of it written to hmask: a row part masks only its own rows);
// otherwise h itself.
template <typename scalar_t>
inline const scalar_t* recurrent_input(const Variants<scalar_t>& var, const scalar_t* h, scalar_t* hmask, int64_t q0,
                                       int64_t q1) {
  if (!var.h_keep) return h;
  for (int64_t q = q0; q < q1; ++q) hmask[q] = h[q] * var.h_keep[q];
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

// What every step loop reads of one layer call: sizes, lengths, the weights as the loops read
// them, and the variants. forward_impl and lstm_backward make one per call.
template <typename scalar_t>
struct LayerArgs {
  int64_t T, B, H, P;
  bool reverse;
  const int64_t* len;      // (B,) lengths, or null: every row runs T steps
  const scalar_t* bias;    // (GH,) b_ih + b_hh, or null (none, or already in G); forward only
  const scalar_t* whh;     // forward: (P, GH) = W_hh^T; backward: (GH, P) = W_hh
  const scalar_t* whh_pk;  // its packed copy for the tiles (forward: pack_whh, or pack_cols with LayerNorm;
                           // backward: pack_cols of W_hh), or null (BLAS)
  const scalar_t* whr;     // forward: (H, P) = W_hr^T; backward: (P, H) = W_hr; or null without projection
  Variants<scalar_t> var;
  // The tiled forward with the input projection in its own tiles (forward_loop_tiled): x (T, B, I)
  // and pack_whh(W_ih^T), or null: G already holds the input projection.
  const scalar_t* x = nullptr;
  const scalar_t* wih_pk = nullptr;
  int64_t I = 0;
};

// The forward's state, records and scratch; null where a call has none.
template <typename scalar_t>
struct ForwardBuffers {
  scalar_t* G;      // (steps, B, GH) in: input projection (bias excluded); REC out: activated gates
  scalar_t* C;      // (T, B, H) out when REC, else null
  scalar_t* out;    // (T, B, P) out
  scalar_t* hs;     // (B, P) in: h0, out: h_n
  scalar_t* cs;     // (B, H) in: c0, out: c_n
  scalar_t* hpre;   // (B, H) scratch when projecting
  scalar_t* hmask;  // (B, P) scratch with recurrent dropout
  scalar_t* hs2;    // (B, P) the tiled loop's second h buffer (see forward_loop_tiled)
  scalar_t* Rs;     // LayerNorm only: (B, GH) scratch for h W_hh^T
  scalar_t* Nh;     //   (T, B, GH) out when REC: the normalized recurrent projection
  scalar_t* rh;     //   (T, B) out: its 1/σ
  scalar_t* Ctl;    //   (B, H) scratch: c̃_t
  scalar_t* Nc;     //   (T, B, H) out when REC: LN(c̃_t) before gain and bias
  scalar_t* rc;     //   (T, B) out: its 1/σ
};

// Rows whose plain cells a tiled step runs side by side (cell_forward_rows). Measured against one
// row at a time (S3 inference, one thread): 1.04x with 2, 1.10x with 4, 1.06x with 8 (five live
// vectors a row: the more rows, the more of them spill from AVX2's sixteen registers).
constexpr int kCellRows = 4;

// The forward loop on tiled steps over steps [s0, s1) in processing order (t = T - 1 - s in
// reverse), g0 the step G[0] holds; a.whh_pk = pack_whh(W_hh^T). h_{t-1} is read by every
// thread's tiles while h_t is written, so b.hs and b.hs2 swap every step (with a projection h_t
// is written after the join, by project_step, and hs alone serves).
//
// With a.wih_pk (pack_whh(W_ih^T)) a step's tiles take x_t W_ih^T and h_{t-1} W_hh^T in one chain
// of multiply-adds per entry (gate_tile_xh), so the input projection is never a pass of its own:
// no (chunk, B, GH) buffer written by one pass and read back by the next from L3 (S1's is 2 MB,
// beyond this CPU's 1 MB L2), and one fork/join per step instead of two per chunk. G then only
// receives the pre-activations: every step's (the records) when REC, else one step's (B, GH) scratch.
template <typename scalar_t, bool REC, int NG>
void forward_loop_tiled(const LayerArgs<scalar_t>& a, const ForwardBuffers<scalar_t>& b, int64_t s0, int64_t s1,
                        int64_t g0) {
  const int64_t T = a.T, B = a.B, H = a.H, P = a.P;
  const bool reverse = a.reverse;
  const int64_t* len = a.len;
  const scalar_t *bias = a.bias, *wpk = a.whh_pk, *whr_t = a.whr, *x = a.x, *wih_pk = a.wih_pk;
  const int64_t I = a.I;
  const bool fused = wih_pk != nullptr;
  const Variants<scalar_t>& var = a.var;
  scalar_t *G = b.G, *C = b.C, *out = b.out, *hs = b.hs, *cs = b.cs, *hpre = b.hpre, *hmask = b.hmask, *hs2 = b.hs2;
  using V = Vec<scalar_t>;
  constexpr int64_t L = V::size();
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH, NU = (H + L - 1) / L;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h;  // h_keep acts outside the cell
  const bool proj = whr_t != nullptr;
  scalar_t* const no_ctl = nullptr;  // c̃ scratch: LayerNorm only
  // Step s's tiles for rows [r0, r1) and unit blocks [u0, u1): h_{t-1} from hcur (hrec: as the
  // recurrent product reads it), h_t into hnxt, the zoneout masks' blocks of step t read from zc_t
  // (B, H) and zh_t (B, P) (null: none; with a projection, zoneout of h follows it).
  auto tiles = [&](int64_t s, const scalar_t* hrec, const scalar_t* hcur, scalar_t* hnxt, const scalar_t* zc_t,
                   const scalar_t* zh_t, int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
    const int64_t t = reverse ? T - 1 - s : s;
    scalar_t* Gt = fused && !REC ? G : G + (t - g0) * B * GH;
    scalar_t* Ot = out + t * B * P;
    const scalar_t* xt = fused ? x + t * B * I : nullptr;
    // The tile's product for one row's units [j, j + n) into G[t]: the whole pre-activation when
    // fused, else added to the input projection there.
    auto pre_activations = [&](scalar_t* g, int64_t j, int64_t n, const V (&acc)[NG]) {
      for (int gi = 0; gi < NG; ++gi) {
        scalar_t* gp = g + gi * H + j;
        if (fused) {
          acc[gi].store(gp, n);
        } else if (n == L) {
          (V::loadu(gp) + acc[gi]).store(gp);
        } else {
          scalar_t buf[L];
          acc[gi].store(buf);
          for (int64_t l = 0; l < n; ++l) gp[l] += buf[l];
        }
      }
    };
    // Row b, units [j, j + n): its pre-activations into G[t], then its cell, one row at a time.
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
      pre_activations(g, j, n, acc);
      scalar_t* c = cs + b * H;
      const scalar_t* zc = zc_t ? zc_t + b * H : nullptr;
      const scalar_t* zh = zh_t ? zh_t + b * P : nullptr;
      const scalar_t* hprev = hcur + b * P;
      for_units<scalar_t>(plain, j, j + n, [&](auto tag, auto variants, int64_t jj) {
        cell_forward<decltype(tag), decltype(variants)::value, REC>(k, jj, g, bias, c, c_row, h_dst, zc, zh, hprev, no_ctl);
      });
      if (!proj) std::memcpy(hnxt + b * P + j, h_dst + j, sizeof(scalar_t) * n);
    };
    // finish for the R rows of a tile at a full block [j, j + L) when every row is active and
    // the cell is plain: the cells of kCellRows rows at a time side by side (cell_forward_rows).
    auto finish_rows = [&](auto mr, int64_t b, int64_t j, const V (&acc)[decltype(mr)::value][NG]) {
      constexpr int R = decltype(mr)::value;
      scalar_t *g[R], *c[R], *c_row[R], *h_dst[R];
      for (int r = 0; r < R; ++r) {
        g[r] = Gt + (b + r) * GH;
        c[r] = cs + (b + r) * H;
        c_row[r] = REC ? C + (t * B + b + r) * H : nullptr;
        h_dst[r] = proj ? hpre + (b + r) * H : Ot + (b + r) * P;
        pre_activations(g[r], j, L, acc[r]);
      }
      int r = 0;
      for (; r + kCellRows <= R; r += kCellRows)
        cell_forward_rows<kCellRows, REC>(k, j, g + r, bias, c + r, c_row + r, h_dst + r);
      for (; r < R; ++r) cell_forward_rows<1, REC>(k, j, g + r, bias, c + r, c_row + r, h_dst + r);
      if (!proj)
        for (int q = 0; q < R; ++q) V::loadu(h_dst[q] + j).store(hnxt + (b + q) * P + j);
    };
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t j = u * L, n = std::min(L, H - j);
      for_row_tiles<scalar_t, NG>(r1 - r0, [&](auto mr, int64_t b) {
        constexpr int R = decltype(mr)::value;
        b += r0;
        V acc[R][NG];
        gate_tile_xh<R, NG>(xt ? xt + b * I : nullptr, I, fused ? wih_pk + u * I * NG * L : nullptr, fused ? I : 0,
                            hrec + b * P, P, wpk + u * P * NG * L, P, acc);
        if constexpr (NG == 4) {  // plain cells (NG = 3 is coupled) of a full block, every row active
          bool all_active = plain && n == L;
          for (int r = 0; r < R && all_active && len; ++r) all_active = row_active(len, b + r, t);
          if (all_active) {
            finish_rows(mr, b, j, acc);
            return;
          }
        }
        for (int r = 0; r < R; ++r) finish(b + r, j, n, acc[r]);
      });
    }
  };
  const int64_t parts = row_parts<scalar_t, NG>(B, proj, ((fused ? I : 0) + P) * GH);
  if (parts > 1) {
    // Rows apart: each thread runs every step of its own rows, all their units, with no join
    // between steps (a row's h_t needs only its own h_{t-1}); see row_parts.
    for_row_parts(B, parts, [&](int64_t r0, int64_t r1) {
      scalar_t *hcur = hs, *hnxt = hs2;
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t t = reverse ? T - 1 - s : s;
        const scalar_t* hrec = recurrent_input(var, hcur, hmask, r0 * P, r1 * P);
        const scalar_t* zc_t = var.zone_c ? var.zone_c.step_rows(t, r0, r1) : nullptr;
        const scalar_t* zh_t = var.zone_h ? var.zone_h.step_rows(t, r0, r1) : nullptr;
        tiles(s, hrec, hcur, hnxt, zc_t, zh_t, r0, r1, 0, NU);
        std::swap(hcur, hnxt);
      }
    });
    if ((s1 - s0) % 2 == 1) std::memcpy(hs, hs2, sizeof(scalar_t) * B * P);  // every part swapped as often
    return;
  }
  const int64_t grain = tile_grain(B, NG * L, fused ? I + P : P);
  scalar_t* hcur = hs;               // h_{t-1}
  scalar_t* hnxt = proj ? hs : hs2;  // h_t
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const scalar_t* hrec = recurrent_input(var, hcur, hmask, 0, B * P);
    const scalar_t* zc_t = var.zone_c ? var.zone_c.step(t) : nullptr;     // (B, H)
    const scalar_t* zh_step = var.zone_h ? var.zone_h.step(t) : nullptr;  // (B, P)
    const scalar_t* zh_t = proj ? nullptr : zh_step;  // with a projection, zoneout of h follows it
    at::parallel_for(0, NU, grain, [&](int64_t u0, int64_t u1) {
      tiles(s, hrec, hcur, hnxt, zc_t, zh_t, 0, B, u0, u1);
    });
    if (proj) {
      project_step<scalar_t>(B, H, P, t, len, hpre, whr_t, zh_step, out + t * B * P, hs);
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
void forward_loop(const LayerArgs<scalar_t>& a,    // a.whh: W_hh^T; a.whh_pk: pack_cols(W_hh^T) for LayerNorm's tiled
                  const ForwardBuffers<scalar_t>& b,  //   h W_hh^T, or null (BLAS)
                  int64_t s0, int64_t s1,          // steps [s0, s1) in processing order (t = T - 1 - s in reverse)
                  int64_t g0) {                    // the step G[0] holds (inference projects a chunk at a time)
  const int64_t T = a.T, B = a.B, H = a.H, P = a.P;
  const bool reverse = a.reverse;
  const int64_t* len = a.len;
  const scalar_t *bias = a.bias, *whh_t = a.whh, *wpk = a.whh_pk, *whr_t = a.whr;
  const Variants<scalar_t>& var = a.var;
  scalar_t *G = b.G, *C = b.C, *out = b.out, *hs = b.hs, *cs = b.cs, *hpre = b.hpre, *hmask = b.hmask;
  scalar_t *Rs = b.Rs, *Nh = b.Nh, *rh = b.rh, *Ctl = b.Ctl, *Nc = b.Nc, *rc = b.rc;
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h && !k.ln;  // h_keep acts outside the cell
  const bool proj = whr_t != nullptr;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    scalar_t* Gt = G + (t - g0) * B * GH;
    scalar_t* Ot = out + t * B * P;
    const scalar_t* hrec = recurrent_input(var, hs, hmask, 0, B * P);
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
          rh[r] = ln_affine_row(Rs + b * GH, GH, var.ln_hw, var.ln_hb, var.eps, REC ? Nh + r * GH : nullptr, g,
                                /*accumulate=*/true);
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
          rc[r] = ln_cell_finish(ctl, g + k.oo, H, var.ln_cw, var.ln_cb, var.eps, zh, hprev, REC ? Nc + r * H : nullptr,
                                 h_dst);
        }
        if (!proj) std::memcpy(hs + b * P, h_dst, sizeof(scalar_t) * P);
      }
    });
    if (proj) project_step<scalar_t>(B, H, P, t, len, hpre, whr_t, zh_step, Ot, hs);
  }
}

// Test knob (set_fused_projection below): 0 auto (tiled steps without LayerNorm project x_t in
// their own tiles), -1 never (the input projection as its own pass by chunks, gates_product): the
// A/B of benchmarks/kernel_ab.py --knob fused_projection. The two round differently (one chain of
// multiply-adds per pre-activation against two), so they agree to float32's precision, not bit for bit.
std::atomic<int> g_fused_projection{0};

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
  const CallTensors call = call_tensors(T, B, H, P, coupled, x, peephole, h_keep, zone_h, zone_c, lengths);
  const Tensor &peep = call.peep, &hk = call.hk, &zh = call.zh, &zc = call.zc, &zh_s = call.zh_s, &zc_s = call.zc_s;
  const int64_t* len = call.len;

  auto opts = x.options();
  const Tensor xc = x.contiguous();
  // The input projection, G = X W_ih^T, by chunks of steps (~512 rows each: still one efficient
  // GEMM, and a chunk is still in cache when its steps run). Recording keeps every step's gates
  // for backward, so G holds all T steps; inference reuses one chunk-sized G: a (T, B, GH)
  // buffer would be freshly mapped memory (page faults: 10 ms of S2's 170). Both project the
  // same chunks, so inference is bit for bit the training forward.
  const bool has_ln = !ln.empty();
  const bool tiled = forward_tiles(x, whh_t.numel());
  // Tiled steps without LayerNorm take the input projection into their own tiles (forward_loop_tiled):
  // no projection pass, and inference needs only one step's G. With nothing to project, every step
  // is one chunk: one call of the step loop, so row parts fork once per layer.
  const bool fused = tiled && !has_ln && w_ih.defined() && g_fused_projection.load(std::memory_order_relaxed) >= 0;
  const int64_t chunk = fused ? T : std::min(T, std::max<int64_t>(1, (512 + B - 1) / B));
  Tensor G = at::empty({rec ? T : fused ? 1 : chunk, B, GH}, opts);
  // The input projection's LayerNorm, G = LN(x W_ih^T)·w_ih' + b_ih' (b_ih + b_hh come in the
  // gate pass), as one pass over the chunk's rows split across threads (inside the step loop it
  // would run on B rows at a time: serial at small B). Recording keeps LN(x W_ih^T) and 1/σ.
  const bool ln_in = ln.size() == 6;
  Tensor Ni = ln_in && rec ? at::empty({T, B, GH}, opts) : Tensor();
  Tensor ri = ln_in && rec ? at::empty({T, B}, opts) : Tensor();
  // With tiled steps the input projection runs on the register tiles too, over W_ih^T packed as
  // W_hh^T is (pack_whh) once per call, or in inference once per weight version (fused.py's cache):
  // in the steps' own tiles, or with LayerNorm by chunks (gates_product). MKL's sgemm packs W_ih^T
  // again for every chunk: 13 times a 16 MB copy per S4 forward, and at one-step decoding (T = 1,
  // B = 5, 256 → 512) more than the product costs. Measured (as a separate pass, before the steps
  // took it in): inference S4 651 → 613 ms, S2 169 → 163 ms, T = 1 B = 5 394 → 262 µs.
  Tensor wih_pk;
  if (w_ih.defined() && tiled) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_pack_wih", [&] {
      wih_pk = wih_packed.defined() ? wih_packed : pack_whh<scalar_t>(w_ih.t().contiguous(), NG);
      constexpr int64_t L = Vec<scalar_t>::size();
      check_packed(wih_pk, {(H + L - 1) / L, I, NG * L}, x, "W_ih^T (pack_whh)");
    });
  }
  auto g_step0 = [&](int64_t t_lo) -> int64_t { return rec ? 0 : t_lo; };  // the step G[0] holds
  auto project = [&](int64_t t_lo, int64_t n) {  // steps [t_lo, t_lo + n) into G
    if (fused) return;  // the steps' tiles project x_t themselves
    const int64_t at_step = t_lo - g_step0(t_lo);
    Tensor Gn = G.narrow(0, at_step, n);
    if (wih_pk.defined()) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_tiled_projection", [&] {
        const scalar_t* a = xc.narrow(0, t_lo, n).data_ptr<scalar_t>();
        if (NG == 3) {
          gates_product<scalar_t, 3>(n * B, H, I, a, I, wih_pk.data_ptr<scalar_t>(), Gn.data_ptr<scalar_t>());
        } else {
          gates_product<scalar_t, 4>(n * B, H, I, a, I, wih_pk.data_ptr<scalar_t>(), Gn.data_ptr<scalar_t>());
        }
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
          const scalar_t r = ln_affine_row(g, GH, w, bb, eps, n0 ? n0 + q * GH : nullptr, g, /*accumulate=*/false);
          if (r0) r0[q] = r;
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
  Tensor hs2 = has_ln || proj ? Tensor() : at::empty({B, P}, opts);  // the other h buffer of forward_loop_tiled
  const int64_t R = rec ? T * B : B;  // rows of the 1/σ records: every step's, or one step's
  Tensor Rs = has_ln ? at::empty({B, GH}, opts) : Tensor(), Nh = has_ln && rec ? at::empty({R, GH}, opts) : Tensor();
  Tensor rh = has_ln ? at::empty({R}, opts) : Tensor(), Ctl = has_ln ? at::empty({B, H}, opts) : Tensor();
  Tensor Nc = has_ln && rec ? at::empty({R, H}, opts) : Tensor(), rc = has_ln ? at::empty({R}, opts) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_fused_forward", [&] {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    const auto var = make_variants<scalar_t>(coupled, peep, hk, zh, zc, ln, eps, B, H, P, zh_s, zc_s);
    const ForwardBuffers<scalar_t> buffers{ptr(G),    ptr(C),  ptr(out), ptr(hs), ptr(cs), ptr(hpre), ptr(hmask),
                                           ptr(hs2), ptr(Rs), ptr(Nh),  ptr(rh), ptr(Ctl), ptr(Nc), ptr(rc)};
    // Steps [s0, s1) in processing order are times [t_lo, t_lo + n): project them, then run them
    // (the loops' g0 is the step G[0] holds).
    auto each_chunk = [&](auto&& steps) {
      for (int64_t s0 = 0; s0 < T; s0 += chunk) {
        const int64_t s1 = std::min(T, s0 + chunk), t_lo = reverse ? T - s1 : s0;
        project(t_lo, s1 - s0);
        steps(s0, s1, g_step0(t_lo));
      }
    };
    if (tiled && !has_ln) {
      const Tensor wpk = whh_packed.defined() ? whh_packed : pack_whh<scalar_t>(whh_t, NG);
      constexpr int64_t L = Vec<scalar_t>::size();
      check_packed(wpk, {(H + L - 1) / L, P, NG * L}, x, "W_hh^T (pack_whh)");
      const LayerArgs<scalar_t> args{T, B, H, P, reverse, len, ptr(bias), ptr(whh_t), ptr(wpk), ptr(whr_t), var,
                                     fused ? xc.data_ptr<scalar_t>() : nullptr, fused ? ptr(wih_pk) : nullptr, I};
      auto steps = [&](auto loop) {
        each_chunk([&](int64_t s0, int64_t s1, int64_t t_lo) { loop(args, buffers, s0, s1, t_lo); });
      };
      if (coupled) {
        if (rec) steps(forward_loop_tiled<scalar_t, true, 3>); else steps(forward_loop_tiled<scalar_t, false, 3>);
      } else {
        if (rec) steps(forward_loop_tiled<scalar_t, true, 4>); else steps(forward_loop_tiled<scalar_t, false, 4>);
      }
    } else {
      // LayerNorm's h W_hh^T on the register tiles, over W_hh^T in column panels (inference: cached)
      const Tensor wpk = !tiled ? Tensor() : whh_cols.defined() ? whh_cols : pack_cols<scalar_t, 4>(whh_t);
      constexpr int64_t W = 4 * Vec<scalar_t>::size();
      if (wpk.defined()) check_packed(wpk, {(GH + W - 1) / W, P, W}, x, "W_hh^T (pack_cols)");
      const LayerArgs<scalar_t> args{T, B, H, P, reverse, len, ptr(bias), ptr(whh_t), ptr(wpk), ptr(whr_t), var};
      auto rows = [&](auto loop) {
        each_chunk([&](int64_t s0, int64_t s1, int64_t t_lo) { loop(args, buffers, s0, s1, t_lo); });
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

}  // namespace
}  // namespace lstmkit
