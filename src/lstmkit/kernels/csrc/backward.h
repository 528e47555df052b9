// Backward through time: the reverse step loop and the chunked weight / input gradients.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "forward.h"
#include "grad_gemm.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// Backward

// What backward reads of the forward and of the incoming gradients, what it writes, and its
// scratch; null where a call has none. (steps, ·) buffers hold one chunk of steps.
template <typename scalar_t>
struct BackwardBuffers {
  const scalar_t* G;      // (T, B, GH) activated gates
  const scalar_t* C;      // (T, B, H)
  const scalar_t* c0;     // (B, H)
  const scalar_t* gout;   // (T, B, P) or null
  const scalar_t* gG;     // (T, B, GH) gradient w.r.t. the returned gates, or null
  const scalar_t* gC;     // (T, B, H) gradient w.r.t. the returned cell states, or null
  scalar_t* dh;           // (B, P) in: dL/dh_n, out: dL/dh0
  scalar_t* dc;           // (B, H) in: dL/dc_n, out: dL/dc0
  scalar_t* dG;           // (steps, B, GH) out: pre-activation gradients
  scalar_t* dH;           // (T, B, P) out when projecting (dL/dh̃_t), else (B, H) scratch
  scalar_t* Hpre;         // (T, B, H) out when projecting: o ⊙ tanh(c̃), else null
  scalar_t* dhpre;        // (B, H) scratch when projecting
  scalar_t* dh_new;       // (B, P) scratch
  scalar_t* dh_zone;      // (B, P) scratch with zoneout of h: z_h ⊙ dL/dh_t
  scalar_t* Cprev;        // (steps, B, H) out with peepholes: c_{t-1}, else null
  scalar_t* Ctil;         // (steps, B, H) out with peepholes: c̃_t, else null
  const scalar_t* Nh;     // LayerNorm only: (T, B, GH) from forward
  const scalar_t* rh;     //   (T, B)
  const scalar_t* Nc;     //   (T, B, H)
  const scalar_t* rc;     //   (T, B)
  scalar_t* DR;           //   (steps, B, GH) out: dL/d(h W_hh^T)
  scalar_t* LNacc;        //   (threads, 3·GH + 2·H) out: per-thread sums of the LayerNorm gradients
                          //   d w_hh', d b_hh', d w_c, d b_c, d w_ih' (zeroed by the caller)
  int64_t acc_rows;       //   its rows
  const scalar_t* ln_iw;  //   input projection's LayerNorm only: its gain w_ih' (GH,)
  const scalar_t* Ni;     //     (T, B, GH) LN(x W_ih^T) from forward
  const scalar_t* ri;     //     (T, B) its 1/σ
  scalar_t* dZ;           //     (steps, B, GH) out: dL/d(x W_ih^T)
  scalar_t* TCO;          //   (B, H) scratch: tanh(LN(c̃)·w_c + b_c)
  scalar_t* DCL;          //   (B, H) scratch: the h path's dL/dc̃
};

template <typename scalar_t>
void backward_loop(const LayerArgs<scalar_t>& a,  // a.whh: W_hh; a.whh_pk: pack_cols(W_hh) or null; a.whr: W_hr
                   const BackwardBuffers<scalar_t>& b,
                   int64_t s0, int64_t s1,  // steps [s0, s1) in processing order, from s1 - 1 down
                   int64_t d0) {            // the step dG[0], DR[0] and dZ[0] hold (backward works by chunks)
  const int64_t T = a.T, B = a.B, H = a.H, P = a.P;
  const bool reverse = a.reverse;
  const int64_t* len = a.len;
  const scalar_t *whh = a.whh, *whh_pk = a.whh_pk, *whr = a.whr;
  const Variants<scalar_t>& var = a.var;
  const scalar_t *G = b.G, *C = b.C, *c0 = b.c0, *gout = b.gout, *gG = b.gG, *gC = b.gC;
  scalar_t *dh = b.dh, *dc = b.dc, *dG = b.dG, *dH = b.dH, *Hpre = b.Hpre, *dhpre = b.dhpre, *dh_new = b.dh_new;
  scalar_t *dh_zone = b.dh_zone, *Cprev = b.Cprev, *Ctil = b.Ctil;
  const scalar_t *Nh = b.Nh, *rh = b.rh, *Nc = b.Nc, *rc = b.rc, *ln_iw = b.ln_iw, *Ni = b.Ni, *ri = b.ri;
  scalar_t *DR = b.DR, *LNacc = b.LNacc, *dZ = b.dZ, *TCO = b.TCO, *DCL = b.DCL;
  const int64_t acc_rows = b.acc_rows;
  const Layout<scalar_t> k(H, var);
  const int64_t GH = k.GH;
  const bool plain = !var.coupled && !var.peep && !var.zone_c && !var.zone_h && !k.ln;  // h_keep acts outside the cell
  const bool proj = whr != nullptr;
  // Every step of rows [r0, r1), their row passes and products split across the threads (or, in a
  // row part, run by its own thread: nested at::parallel_for calls run inline).
  auto steps = [&](int64_t r0, int64_t r1) {
    for (int64_t s = s1 - 1; s >= s0; --s) {
      const int64_t t = reverse ? T - 1 - s : s;
      const int64_t dt = t - d0;  // the step's slot in dG, DR, dZ
      const scalar_t* zh_step = var.zone_h ? var.zone_h.step_rows(t, r0, r1) : nullptr;  // (B, P)
      // dL/dh_t = carry from step t+1 (in processing order) + the output's own gradient; with
      // zoneout z_h of it goes straight to h_{t-1} and (1 - z_h) of it to h̃_t.
      scalar_t* dht = proj ? dH + t * B * P : dH;
      for (int64_t b = r0; b < r1; ++b) {
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
        step_gemm<scalar_t>(r1 - r0, H, P, dht + r0 * P, P, whr, dhpre + r0 * H, /*accumulate=*/false);  // dh̃_t W_hr
        dhp = dhpre;
      }
      const scalar_t* Gt = G + t * B * GH;
      const scalar_t* Ct = C + t * B * H;
      scalar_t* dGt = dG + dt * B * GH;
      const scalar_t* zc_t = var.zone_c ? var.zone_c.step_rows(t, r0, r1) : nullptr;  // (B, H)
      at::parallel_for(r0, r1, row_grain(GH), [&](int64_t b0, int64_t b1) {
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
          if (k.ln) {  // through h̃ = o ⊙ tanh(LN(c̃)·w_c + b_c) back to c̃ (d w_c, d b_c into acc)
            tco = TCO + b * H, dcl = DCL + b * H;
            scalar_t* acw = acc + 2 * GH;
            ln_cell_finish_backward(dhr, g + k.oo, Nc + (t * B + b) * H, rc[t * B + b], H, var.ln_cw, var.ln_cb, acw,
                                    acw + H, tco, dcl);
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
        cols_product<scalar_t, 4>(r1 - r0, P, GH, dR + r0 * GH, GH, whh_pk, dh_new + r0 * P);
      } else {
        step_gemm<scalar_t>(r1 - r0, P, GH, dR + r0 * GH, GH, whh, dh_new + r0 * P, /*accumulate=*/false);
      }
      // dL/dh_{t-1} = dG[t] W_hh (⊙ h_keep) (+ z_h ⊙ dL/dh_t). Rows that did not run at step t
      // pass their carried gradient through unchanged.
      for (int64_t b = r0; b < r1; ++b) {
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
  };
  // On the tiles, each thread may instead take its own rows through every step (row_parts): a
  // row's gradients need only its own, and a tile builds each entry the same way for any rows.
  // Not with LayerNorm, whose per-thread sums of its parameters' gradients would then add the
  // rows in another order (and its forward splits units anyway).
  const int64_t parts = whh_pk && !k.ln ? row_parts<scalar_t, 4>(B, proj, P * GH) : 1;
  if (parts == 1) return steps(0, B);
  for_row_parts(B, parts, steps);
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
  const CallTensors call = call_tensors(T, B, H, P, coupled, x, peephole, h_keep, zone_h, zone_c, lengths);
  const Tensor &peep = call.peep, &hk = call.hk, &zh = call.zh, &zc = call.zc, &zh_s = call.zh_s, &zc_s = call.zc_s;
  const int64_t* len = call.len;
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
  // The chunk products on the register tiles (grad_gemm.h) where the steps tile, else BLAS; dX
  // reads W_ih in column panels, packed once per call.
  bool grad_tiles = false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_grad_tiles", [&] {
    grad_tiles = use_tiled<scalar_t>(kTileRows) && g_grad_tiles.load(std::memory_order_relaxed) >= 0;
  });
  Tensor wih_cols;
  if (grad_tiles && dx.defined()) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_pack_wih_cols",
                               [&] { wih_cols = pack_cols<scalar_t, 4>(w_ih.contiguous()); });
  }
  // dst (GH, N) += srcᵀ rows (src: the rows' step gradients, (rows, GH)); on the tiles, rows packed
  // in column panels first.
  auto add_atb = [&](Tensor& dst, const Tensor& src, const Tensor& rows) {
    if (!grad_tiles) {
      dst.addmm_(src.t(), rows);
      return;
    }
    const Tensor r = rows.contiguous(), s = src.contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_tiled_atb", [&] {
      const Tensor pk = pack_cols<scalar_t, 4>(r);
      tiled_atb<scalar_t>(dst.size(0), dst.size(1), r.size(0), s.data_ptr<scalar_t>(), s.size(1),
                          pk.data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), dst.size(1));
    });
  };
  std::vector<Tensor> peep_sums;  // Σ dG ⊙ c_{t-1} for i and f, Σ dG ⊙ c̃_t for o
  // The gradients of the chunk at times [t_lo, t_lo + n), held in the buffers' first n steps.
  auto flush = [&](int64_t t_lo, int64_t n) {
    const Tensor dGc = dG.narrow(0, 0, n), dZc = (ln_in ? dZ : dG).narrow(0, 0, n);
    const Tensor dRc = (has_ln ? DR : dG).narrow(0, 0, n);
    if (w_ih.defined()) {
      const Tensor dZ2 = dZc.view({n * B, GH});
      if (dx.defined()) {
        Tensor dx2 = dx.view({T * B, I}).narrow(0, t_lo * B, n * B);
        if (wih_cols.defined()) {
          AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_tiled_dx", [&] {
            tiled_mm<scalar_t>(n * B, I, GH, dZ2.data_ptr<scalar_t>(), GH, wih_cols.data_ptr<scalar_t>(),
                               dx2.data_ptr<scalar_t>(), I);
          });
        } else {
          at::mm_out(dx2, dZ2, w_ih);
        }
      }
      add_atb(dw_ih, dZ2, x2.narrow(0, t_lo * B, n * B));
      if (db.defined()) db.add_(dGc.view({n * B, GH}).sum(0));
    }
    // Times in the chunk whose h_{t-1} is another step's output: t ≥ 1 forward, t ≤ T - 2 in reverse.
    const int64_t a = reverse ? t_lo : std::max<int64_t>(t_lo, 1), e = reverse ? std::min(t_lo + n, T - 1) : t_lo + n;
    if (e > a) {
      const Tensor h_prev = out_c.narrow(0, reverse ? a + 1 : a - 1, e - a).reshape({(e - a) * B, P});
      add_atb(dw_hh, dRc.narrow(0, a - t_lo, e - a).reshape({(e - a) * B, GH}), h_prev);
    }
    Tensor dR_first;  // (B, GH): the gradient at each row's first step, where it falls in this chunk
    if (!reverse) {
      if (t_lo == 0) dR_first = dRc[0];
    } else if (len == nullptr) {
      if (t_lo + n == T) dR_first = dRc[n - 1];
    } else {
      const Tensor first = call.len_c - 1;  // each row's first step in reverse (-1: an empty row)
      const Tensor here = (first >= t_lo).logical_and(first < t_lo + n);
      if (here.any().item<bool>()) {
        const Tensor idx = (first - t_lo).clamp(0, n - 1).view({1, B, 1}).expand({1, B, GH});
        dR_first = dRc.gather(0, idx).squeeze(0).mul_(here.to(dG.scalar_type()).unsqueeze(1));
      }
    }
    if (dR_first.defined()) add_atb(dw_hh, dR_first, h0_c);
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
    const LayerArgs<scalar_t> args{T, B, H, P, reverse, len, nullptr, ptr(whh), ptr(whh_pk), ptr(whr), var};
    const BackwardBuffers<scalar_t> buffers{
        ptr(Gc),    ptr(Cc),   ptr(c0c),  ptr(gout),  ptr(gG),    ptr(gC),    ptr(dh),    ptr(dc),
        ptr(dG),    ptr(dH),   ptr(Hpre), ptr(dhpre), ptr(dh_new), ptr(dh_zone), ptr(Cprev), ptr(Ctil),
        ptr(Nh),    ptr(rh),   ptr(Nc),   ptr(rc),    ptr(DR),    ptr(LNacc), acc_rows,   ln_in ? ptr(ln[4]) : nullptr,
        ptr(Ni),    ptr(ri),   ptr(dZ),   ptr(TCO),   ptr(DCL)};
    // Steps [s0, s1) in processing order, from the last chunk down, are times [t_lo, t_lo + n).
    for (int64_t s1 = T; s1 > 0; s1 -= chunk) {
      const int64_t s0 = std::max<int64_t>(0, s1 - chunk), n = s1 - s0, t_lo = reverse ? T - s1 : s0;
      backward_loop<scalar_t>(args, buffers, s0, s1, t_lo);
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

}  // namespace
}  // namespace lstmkit
