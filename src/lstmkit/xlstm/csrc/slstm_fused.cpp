// The fused CPU sLSTM kernel: one layer, one direction, forward and hand-written backward
// through time, registered as PyTorch operators lstmkit_xlstm::slstm_forward,
// slstm_inference and slstm_backward (fake kernels and autograd: lstmkit/xlstm/slstm_fused.py).
//
// One translation unit in parts: lk.LSTM's kernel headers (kernels/csrc: GEMM, vector maths,
// register tiles), then slstm_cell.h (the cell on vector lanes), slstm_weights.h (the head-wise
// weights as panels and per-head matrices), then this file (the step loops and the operators).
//
// Shape legend: T = steps, B = batch, I = input features, H = hidden size, NH heads of
// dh = H / NH units. Buffers are time-major and contiguous.
//   x     (T, B, I)   the layer's input
//   w_ih  (4H, I)     input weights, gate order i, f, z, o; bias (4H,) = b_ih + b_hh, or none
//   w_hh  (4H, dh)    the head-wise recurrent weights as lk.sLSTM stores them
//   gates (T, B, 6H)  per step [i', f', z, o, ĩ, f̃]: the stabilized gates the step used, then
//                     the raw input and forget pre-activations (backward's branch of the max)
//   cs, ns, ms (T, B, H)  cell, normalizer and stabilizer after each step
//
// Equations (lstmkit/xlstm/slstm_reference.py has them in full):
//   [ĩ f̃ z̃ õ] = x_t W_ih^T + bias + R(h_{t-1})       R: each unit's product with its own head of h
//   log f = log σ(f̃) or f̃ (exp forget gate);  m̂ = m_{t-1} if n_{t-1} > 0 else −∞
//   m_t = max(log f + m̂, ĩ);  i' = exp(ĩ − m_t);  f' = exp(log f + m̂ − m_t)
//   c_t = f' c_{t-1} + i' tanh(z̃);  n_t = f' n_{t-1} + i';  h_t = σ(õ) c_t / n_t
//
// Forward (and inference, which records only the output), as lk.LSTM's forward: the input
// projection by chunks of ~512 rows of steps into one reused buffer, each chunk just before its
// steps run (register tiles over W_ih^T packed per call where the steps tile, else a GEMM; the
// bias is added in the cell), so no (T, B, 4H) buffer is made (freshly mapped memory: its page
// faults and the extra pass cost more than a GEMM's blocking saves). Its gradients (dx, dW_ih,
// the bias's) are GEMMs of dG in the operator's autograd (slstm_fused.py). The steps are tiled
// where lk.LSTM's are (use_tiled: float32 on AVX2, B ≥ 3), as its forward_loop_tiled: one parallel
// region per step, each thread owning a range of blocks of L units (all four gates), computing
// the recurrent product of 3 rows × those units in registers over W_hh^T packed per head
// (pack_forward) and running the cells on it while it is in registers. Otherwise one product
// per head per step (BLAS, or a loop for tiny ones) and a pass over the rows. Measured (one
// thread, CPU time, sLSTM / lk.LSTM fused, S1–S5) against the earlier kernel's xp made by
// F.linear and one BLAS GEMM per step over the dense block-diagonal: forward 1.37 1.32 1.48 1.36
// 1.09 → 1.02 0.99 0.87 1.06 0.99; training 1.36 1.32 1.42 1.24 1.39 → 1.11 1.14 1.20 1.03 1.02.
// Backward: in reverse, one pass over the rows turns dh_t, dc_t, dn_t, dm_t into
// dG[t] = d[ĩ f̃ z̃ õ] and the carried dc, dn, dm; then dh_{t-1} = dG[t] W_hh, on register tiles
// over W_hh packed per block of h's columns (pack_backward) where the forward tiles, else per
// head by BLAS; after the loop dW_hh = dG^T H_prev, per head. The max routes its gradient like
// torch.maximum (half to each side at a tie), so the kernel's gradients are the reference's
// autograd ones.
//
// Lengths (right-padded): a row is active at step t when t < length; inactive rows keep their
// state and record zeros; in reverse a row starts at its own last step.
#include "slstm_weights.h"

namespace lstmkit {
namespace slstm {
namespace {

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
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * H && w_hh.size(1) >= 1 && H % w_hh.size(1) == 0 &&
                  w_hh.scalar_type() == dtype,
              "slstm: w_hh must be (4H, dh) = (", 4 * H, ", dh) with dh dividing H = ", H,
              ", of the inputs' dtype; got ", w_hh.sizes(), " ", w_hh.scalar_type());
  for (const auto& s : state) {
    TORCH_CHECK(s.dim() == 2 && s.size(0) == B && s.size(1) == H && s.is_contiguous() && s.scalar_type() == dtype,
                "slstm: every state must be a contiguous (B, H) = (", B, ", ", H, ") tensor of the inputs' dtype");
  }
}

// Returns H.
int64_t check_inputs(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias, const Tensor& w_hh,
                     const std::vector<Tensor>& state) {
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), "slstm: x must be a contiguous (T, B, I) tensor, got ", x.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % 4 == 0 && w_ih.size(1) == x.size(2) &&
                  w_ih.scalar_type() == x.scalar_type(),
              "slstm: w_ih must be (4H, I) with I = ", x.size(2), " of x's dtype, got ", w_ih.sizes(), " ",
              w_ih.scalar_type());
  const int64_t H = w_ih.size(0) / 4;
  TORCH_CHECK(!bias.has_value() || !bias->defined() ||
                  (bias->dim() == 1 && bias->size(0) == 4 * H && bias->scalar_type() == x.scalar_type()),
              "slstm: bias must be (4H,) = (", 4 * H, ",) of x's dtype");
  check_weights_and_state(x.size(1), H, x.scalar_type(), w_hh, state);
  return H;
}

// Rows per chunk of a pass over rows: ~4k units of cell maths per chunk pays for waking a thread.
inline int64_t rows_grain(int64_t H) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1)); }

// What a forward loop reads and writes; the records are null in inference.
template <typename T>
struct Forward {
  int64_t B, H;
  const T* xp;       // (n, B, 4H) the input projection of steps [g0, g0 + n), bias excluded
  int64_t g0;
  const T* bias;     // (4H,)
  T *h, *c, *n, *m;  // (B, H) in: the initial state, out: the final one
  T* h2;             // (B, H) the tiled loop's second h buffer (threads read h_{t-1} while h_t is written)
  T* out;            // (T, B, H)
  T *gates, *cs, *ns, *ms;
  bool exp_forget;

  // Row b of step t from unit j on, its carried h written to h_dst.
  CellOut<T> at(int64_t t, int64_t b, int64_t j, T* h_dst) const {
    const int64_t row = (t * B + b) * H + j, s = b * H + j;
    const bool rec = gates != nullptr;
    return {c + s,           n + s,
            m + s,           h_dst + s,
            out + row,       rec ? gates + (t * B + b) * 6 * H + j : nullptr,
            rec ? cs + row : nullptr, rec ? ns + row : nullptr,
            rec ? ms + row : nullptr};
  }
};

// The tiled steps (see the overview): h_{t-1} is read by every thread's tiles while h_t is
// written, so f.h and f.h2 swap every step.
template <typename T, bool REC>
void forward_tiled(const Steps& steps, int64_t s0, int64_t s1, const Panels<T>& pk, const Forward<T>& f) {
  using V = Vec<T>;
  constexpr int64_t L = V::size();
  const int64_t B = f.B, H = f.H, NU = (H + L - 1) / L;
  const int64_t grain = tile_grain(B, 4 * L, pk.kmax);
  T* hcur = f.h;
  T* hnxt = f.h2;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = steps.at(s);
    auto rows = [&](auto mr, int64_t b, int64_t u) {
      constexpr int R = decltype(mr)::value;
      V acc[R][4];
      gate_tile<R, 4>(hcur + b * H + pk.k0[u], H, pk.panel(u), pk.K[u], acc);
      const int64_t j = u * L, k = std::min(L, H - j);
      for (int r = 0; r < R; ++r) {
        const CellOut<T> o = f.at(t, b + r, j, hnxt);
        if (!steps.active(t, b + r)) {
          cell_inactive<T, REC>(hcur + (b + r) * H + j, o, H, k);
          continue;
        }
        const T* x = f.xp + ((t - f.g0) * B + b + r) * 4 * H + j;
        const T* bs = f.bias + j;
        cell_lanes<T, REC>(load(x, k) + load(bs, k) + acc[r][0], load(x + H, k) + load(bs + H, k) + acc[r][1],
                           load(x + 2 * H, k) + load(bs + 2 * H, k) + acc[r][2],
                           load(x + 3 * H, k) + load(bs + 3 * H, k) + acc[r][3], o, H, k, f.exp_forget);
      }
    };
    at::parallel_for(0, NU, grain, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) for_row_tiles(B, [&](auto mr, int64_t b) { rows(mr, b, u); });
    });
    std::swap(hcur, hnxt);
  }
  if (hcur != f.h) std::memcpy(f.h, hcur, sizeof(T) * B * H);
}

// The steps as a product per head (wf: per_head_forward) into R (B, 4H), then a pass over the rows.
template <typename T, bool REC>
void forward_by_rows(const Steps& steps, int64_t s0, int64_t s1, int64_t dh, const T* wf, T* R, T* tmp,
                     const Forward<T>& f) {
  using V = Vec<T>;
  constexpr int64_t L = V::size();
  const int64_t B = f.B, H = f.H;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t t = steps.at(s);
    forward_product_blas<T>(B, H, dh, f.h, wf, R, tmp);
    at::parallel_for(0, B, rows_grain(H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const bool active = steps.active(t, b);
        for (int64_t j = 0; j < H; j += L) {
          const int64_t k = std::min(L, H - j);
          const CellOut<T> o = f.at(t, b, j, f.h);
          if (!active) {
            cell_inactive<T, REC>(o.h, o, H, k);
            continue;
          }
          const T* x = f.xp + ((t - f.g0) * B + b) * 4 * H + j;
          const T* r = R + b * 4 * H + j;
          const T* bs = f.bias + j;
          cell_lanes<T, REC>(load(x, k) + load(bs, k) + load(r, k), load(x + H, k) + load(bs + H, k) + load(r + H, k),
                             load(x + 2 * H, k) + load(bs + 2 * H, k) + load(r + 2 * H, k),
                             load(x + 3 * H, k) + load(bs + 3 * H, k) + load(r + 3 * H, k), o, H, k, f.exp_forget);
        }
      }
    });
  }
}

// The step loop of forward and inference: records into gates, cs, ns, ms unless they are undefined.
void forward_loop(const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias_, const Tensor& w_hh,
                  Tensor& h, Tensor& c, Tensor& n, Tensor& m, Tensor& out, Tensor& gates, Tensor& cs, Tensor& ns,
                  Tensor& ms, const Steps& steps, bool exp_forget) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_ih.size(0) / 4, dh = w_hh.size(1);
  const bool record = gates.defined();
  const Tensor w = w_hh.contiguous();
  const Tensor bias = bias_.has_value() && bias_->defined() ? bias_->contiguous() : at::zeros({4 * H}, x.options());
  // The chunks of steps the input projection runs by, the same in recording and inference (so
  // inference is bit for bit the recording forward).
  const int64_t chunk = std::min(T, std::max<int64_t>(1, (512 + B - 1) / B));
  Tensor G = at::empty({chunk, B, 4 * H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "slstm_forward", [&] {
    using T_ = scalar_t;
    auto p = [&](Tensor& t) -> T_* { return record ? t.data_ptr<T_>() : nullptr; };
    Forward<T_> f{B, H, G.data_ptr<T_>(), 0, bias.data_ptr<T_>(), h.data_ptr<T_>(), c.data_ptr<T_>(),
                  n.data_ptr<T_>(), m.data_ptr<T_>(), nullptr, out.data_ptr<T_>(), p(gates), p(cs), p(ns), p(ms),
                  exp_forget};
    const bool tiled = use_tiled<T_>(B);
    const Tensor wih_pk = tiled ? pack_cols<T_, 4>(w_ih.t().contiguous()) : Tensor();
    const Tensor wih_t = tiled ? Tensor() : w_ih.t();
    // Steps [s0, s1) in processing order are times [t_lo, t_lo + n): project them into G, then run them.
    auto each_chunk = [&](auto&& run) {
      for (int64_t s0 = 0; s0 < T; s0 += chunk) {
        const int64_t s1 = std::min(T, s0 + chunk), t_lo = steps.reverse ? T - s1 : s0, rows = (s1 - s0) * B;
        const T_* xc = x.data_ptr<T_>() + t_lo * B * I;
        if (tiled) {
          cols_product<T_, 4>(rows, 4 * H, I, xc, I, wih_pk.data_ptr<T_>(), G.data_ptr<T_>());
        } else {
          Tensor g2 = G.view({chunk * B, 4 * H}).narrow(0, 0, rows);
          at::mm_out(g2, x.view({T * B, I}).narrow(0, t_lo * B, rows), wih_t);
        }
        f.g0 = t_lo;
        run(s0, s1);
      }
    };
    if (tiled) {
      const Panels<T_> pk = pack_forward<T_>(w, H);
      Tensor h2 = at::empty({B, H}, x.options());
      f.h2 = h2.data_ptr<T_>();
      each_chunk([&](int64_t s0, int64_t s1) {
        record ? forward_tiled<T_, true>(steps, s0, s1, pk, f) : forward_tiled<T_, false>(steps, s0, s1, pk, f);
      });
    } else {
      const Tensor wf = per_head_forward(w, H);
      Tensor R = at::empty({B, 4 * H}, x.options()), tmp = at::empty({B, 4 * dh}, x.options());
      const T_* wfp = wf.data_ptr<T_>();
      T_ *Rp = R.data_ptr<T_>(), *tp = tmp.data_ptr<T_>();
      each_chunk([&](int64_t s0, int64_t s1) {
        record ? forward_by_rows<T_, true>(steps, s0, s1, dh, wfp, Rp, tp, f)
               : forward_by_rows<T_, false>(steps, s0, s1, dh, wfp, Rp, tp, f);
      });
    }
  });
}

// The forward of slstm_forward (record: every step's gates, c, n, m) and slstm_inference (only the
// output): {out, h, c, n, m, gates, cs, ns, ms}, the last four undefined without record.
std::vector<Tensor> run_forward(bool record, const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias,
                                const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0,
                                const Tensor& m0, const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget) {
  const int64_t H = check_inputs(x, w_ih, bias, w_hh, {h0, c0, n0, m0});
  const int64_t T = x.size(0), B = x.size(1);
  const Steps steps = make_steps(T, B, reverse, lengths);
  // Every row of every step is written by the loop (zeros past a length).
  auto make = [&](int64_t width) { return record ? at::empty({T, B, width}, x.options()) : Tensor(); };
  Tensor out = at::empty({T, B, H}, x.options()), gates = make(6 * H), cs = make(H), ns = make(H), ms = make(H);
  Tensor h = h0.clone(), c = c0.clone(), n = n0.clone(), m = m0.clone();
  forward_loop(x, w_ih, bias, w_hh, h, c, n, m, out, gates, cs, ns, ms, steps, exp_forget);
  return {out, h, c, n, m, gates, cs, ns, ms};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> slstm_forward(
    const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias, const Tensor& w_hh, const Tensor& h0,
    const Tensor& c0, const Tensor& n0, const Tensor& m0, const c10::optional<Tensor>& lengths, bool reverse,
    bool exp_forget) {
  const auto r = run_forward(true, x, w_ih, bias, w_hh, h0, c0, n0, m0, lengths, reverse, exp_forget);
  return {r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]};
}

// Inference: the same steps, recording nothing but the output (no gates, c, n, m per step).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> slstm_inference(
    const Tensor& x, const Tensor& w_ih, const c10::optional<Tensor>& bias, const Tensor& w_hh, const Tensor& h0,
    const Tensor& c0, const Tensor& n0, const Tensor& m0, const c10::optional<Tensor>& lengths, bool reverse,
    bool exp_forget) {
  const auto r = run_forward(false, x, w_ih, bias, w_hh, h0, c0, n0, m0, lengths, reverse, exp_forget);
  return {r[0], r[1], r[2], r[3], r[4]};
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
  const int64_t dh = w_hh.size(1), NH = H / dh;
  const Steps steps = make_steps(T, B, reverse, lengths);
  auto opts = out.options();
  // Running gradients of the state after the step being processed; they start as the final state's.
  auto start = [&](const c10::optional<Tensor>& g) {
    return g.has_value() && g->defined() ? g->contiguous().clone() : at::zeros({B, H}, opts);
  };
  Tensor dh_ = start(g_hn), dc = start(g_cn), dn = start(g_nn), dm = start(g_mn);
  // Both written row by row in the loop (zeros past a length, where h_prev must not be garbage:
  // it enters dW_hh's GEMM).
  Tensor dG = at::empty({T, B, 4 * H}, opts);
  Tensor h_prev = at::empty({T, B, H}, opts);  // h_{t-1} of every active (t, b): dW_hh's right factor
  Tensor dh_rec = at::empty({B, H}, opts);
  const Tensor w = w_hh.contiguous();
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
    T_ *dhp = dh_.data_ptr<T_>(), *dcp = dc.data_ptr<T_>(), *dnp = dn.data_ptr<T_>(), *dmp = dm.data_ptr<T_>();
    T_* dGp = dG.data_ptr<T_>();
    T_* hpp = h_prev.data_ptr<T_>();
    T_* drp = dh_rec.data_ptr<T_>();
    // dG[t] W_hh: tiled where the forward tiles (from kBackwardMinSteps steps: below that the
    // packing costs more than the tiles save, as in lk.LSTM's backward), else per head by BLAS.
    const bool tiled = use_tiled<T_>(B) && (g_tiled.load(std::memory_order_relaxed) != 0 || T >= kBackwardMinSteps);
    Panels<T_> pk;
    Tensor wb, tmp;
    if (tiled) {
      pk = pack_backward<T_>(w, H);
    } else {
      wb = per_head_backward(w, H);
      tmp = at::empty({B * 5 * dh}, opts);
    }
    for (int64_t k = T - 1; k >= 0; --k) {
      const int64_t t = steps.at(k);
      at::parallel_for(0, B, rows_grain(H), [&](int64_t b0, int64_t b1) {
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
          cell_backward_row<T_>(gp + g_row, csp + row, nsp + row, cprev, nprev, mprev, gop ? gop + row : nullptr,
                                ggp ? ggp + g_row : nullptr, gcp ? gcp + row : nullptr, gnp ? gnp + row : nullptr,
                                gmp ? gmp + row : nullptr, dhp + b * H, dcp + b * H, dnp + b * H, dmp + b * H,
                                dGp + (t * B + b) * 4 * H, H, exp_forget);
        }
      });
      const T_* dGt = dGp + t * B * 4 * H;  // (B, 4H)
      if (tiled) {
        backward_product<T_>(B, H, dGt, pk, drp);
      } else {
        backward_product_blas<T_>(B, H, dh, dGt, wb.data_ptr<T_>(), drp, tmp.data_ptr<T_>());
      }
      for (int64_t b = 0; b < B; ++b) {
        if (steps.active(t, b)) std::copy(drp + b * H, drp + (b + 1) * H, dhp + b * H);
      }
    }
  });
  // dW_hh = dG^T H_prev over all steps, head by head: (4H, dh).
  Tensor dw_hh = NH == 1 ? at::mm(dG.reshape({T * B, 4 * H}).t(), h_prev.reshape({T * B, H}))
                         : at::einsum("tgku,tki->gkui", {dG.reshape({T * B, 4, NH, dh}), h_prev.reshape({T * B, NH, dh})})
                               .reshape({4 * H, dh});
  return {dG, dw_hh, dh_, dc, dn, dm};
}

}  // namespace
}  // namespace slstm
}  // namespace lstmkit

TORCH_LIBRARY(lstmkit_xlstm, m) {
  m.def(
      "slstm_forward(Tensor x, Tensor w_ih, Tensor? bias, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, "
      "Tensor? lengths, "
      "bool reverse, bool exp_forget) -> (Tensor out, Tensor h_n, Tensor c_n, Tensor n_n, Tensor m_n, "
      "Tensor gates, Tensor cs, Tensor ns, Tensor ms)");
  m.def(
      "slstm_inference(Tensor x, Tensor w_ih, Tensor? bias, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, "
      "Tensor m0, Tensor? lengths, "
      "bool reverse, bool exp_forget) -> (Tensor out, Tensor h_n, Tensor c_n, Tensor n_n, Tensor m_n)");
  m.def(
      "slstm_backward(Tensor? g_out, Tensor? g_hn, Tensor? g_cn, Tensor? g_nn, Tensor? g_mn, Tensor? g_gates, "
      "Tensor? g_cs, Tensor? g_ns, Tensor? g_ms, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, "
      "Tensor? lengths, bool reverse, bool exp_forget, Tensor out, Tensor gates, Tensor cs, Tensor ns, Tensor ms) "
      "-> (Tensor d_xp, Tensor d_w_hh, Tensor d_h0, Tensor d_c0, Tensor d_n0, Tensor d_m0)");
  // Test knobs: force the tiled steps on (1) or off (-1), or leave the choice to the build (0);
  // and ask which a forward of this dtype and batch size runs.
  m.def("set_tiled(int mode) -> ()", [](int64_t mode) {
    TORCH_CHECK(mode >= -1 && mode <= 1, "set_tiled: mode must be -1 (never), 0 (auto) or 1 (always), got ", mode);
    lstmkit::g_tiled.store(static_cast<int>(mode));
  });
  m.def("uses_tiled(bool float64, int batch) -> bool", [](bool float64, int64_t batch) {
    return float64 ? lstmkit::use_tiled<double>(batch) : lstmkit::use_tiled<float>(batch);
  });
}

TORCH_LIBRARY_IMPL(lstmkit_xlstm, CPU, m) {
  m.impl("slstm_forward", &lstmkit::slstm::slstm_forward);
  m.impl("slstm_inference", &lstmkit::slstm::slstm_inference);
  m.impl("slstm_backward", &lstmkit::slstm::slstm_backward);
}
