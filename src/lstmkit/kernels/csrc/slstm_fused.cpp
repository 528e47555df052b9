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
// Forward: per step one GEMM h_{t-1} W_hh^T, then one pass over the rows (split across
// threads) that computes the cells in place. Backward: in reverse, one pass over the rows turns
// dh_t, dc_t, dn_t, dm_t into dG[t] = d[ĩ f̃ z̃ õ] and the carried dc, dn, dm; one GEMM gives
// dh_{t-1} = dG[t] W_hh; after the loop dW_hh = dG^T H_prev is one GEMM over all steps. The max
// routes its gradient like torch.maximum (half to each side at a tie), so the kernel's
// gradients are the reference's autograd ones.
//
// Lengths (right-padded): a row is active at step t when t < length; inactive rows keep their
// state and record zeros; in reverse a row starts at its own last step.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

template <typename T>
inline T log_sigmoid(T x) {
  return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

int64_t row_grain(int64_t H) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1)); }

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
  }
  return Steps{T, B, reverse, len};
}

void check_inputs(const Tensor& xp, const Tensor& w_hh, const std::vector<Tensor>& state) {
  TORCH_CHECK(xp.dim() == 3 && xp.is_contiguous(), "slstm: xp must be a contiguous (T, B, 4H) tensor");
  const int64_t B = xp.size(1), GH = xp.size(2), H = GH / 4;
  TORCH_CHECK(GH == 4 * H, "slstm: xp's last dimension must be 4H, got ", GH);
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == GH && w_hh.size(1) == H, "slstm: w_hh must be (4H, H)");
  TORCH_CHECK(w_hh.scalar_type() == xp.scalar_type(), "slstm: w_hh's dtype must be xp's");
  for (const auto& s : state) {
    TORCH_CHECK(s.dim() == 2 && s.size(0) == B && s.size(1) == H && s.is_contiguous() &&
                    s.scalar_type() == xp.scalar_type(),
                "slstm: every state must be a contiguous (B, H) tensor of xp's dtype");
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> slstm_forward(
    const Tensor& xp, const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0, const Tensor& m0,
    const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget) {
  check_inputs(xp, w_hh, {h0, c0, n0, m0});
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 4;
  const Steps steps = make_steps(T, B, reverse, lengths);
  Tensor out = at::zeros({T, B, H}, xp.options());
  Tensor gates = at::zeros({T, B, 6 * H}, xp.options());
  Tensor cs = at::zeros({T, B, H}, xp.options()), ns = at::zeros_like(cs), ms = at::zeros_like(cs);
  Tensor h = h0.clone(), c = c0.clone(), n = n0.clone(), m = m0.clone();
  Tensor w_t = w_hh.t().contiguous();  // (H, 4H)
  Tensor rec = at::empty({B, 4 * H}, xp.options());
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "slstm_forward", [&] {
    using T_ = scalar_t;
    const T_ NEG_INF = -std::numeric_limits<T_>::infinity();
    T_* hp = h.data_ptr<T_>();
    T_* cp = c.data_ptr<T_>();
    T_* np_ = n.data_ptr<T_>();
    T_* mp = m.data_ptr<T_>();
    const T_* xpp = xp.data_ptr<T_>();
    const T_* rp = rec.data_ptr<T_>();
    T_* op = out.data_ptr<T_>();
    T_* gp = gates.data_ptr<T_>();
    T_* csp = cs.data_ptr<T_>();
    T_* nsp = ns.data_ptr<T_>();
    T_* msp = ms.data_ptr<T_>();
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = steps.at(k);
      at::mm_out(rec, h, w_t);  // (B, 4H) = h_{t-1} W_hh^T
      at::parallel_for(0, B, row_grain(H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          if (!steps.active(t, b)) continue;
          const T_* x = xpp + (t * B + b) * 4 * H;
          const T_* r = rp + b * 4 * H;
          T_* g = gp + (t * B + b) * 6 * H;
          const int64_t row = (t * B + b) * H;
          for (int64_t j = 0; j < H; ++j) {
            const int64_t s = b * H + j;
            const T_ ip = x[j] + r[j], fp = x[H + j] + r[H + j];
            const T_ zp = x[2 * H + j] + r[2 * H + j], opre = x[3 * H + j] + r[3 * H + j];
            const T_ lf = exp_forget ? fp : log_sigmoid(fp);
            const T_ a = lf + (np_[s] > 0 ? mp[s] : NEG_INF);
            const T_ mt = std::max(a, ip);
            const T_ i = std::exp(ip - mt), f = std::exp(a - mt);
            const T_ z = std::tanh(zp), o = sigmoid(opre);
            const T_ ct = f * cp[s] + i * z, nt = f * np_[s] + i;
            const T_ ht = o * ct / nt;
            g[j] = i, g[H + j] = f, g[2 * H + j] = z, g[3 * H + j] = o, g[4 * H + j] = ip, g[5 * H + j] = fp;
            csp[row + j] = ct, nsp[row + j] = nt, msp[row + j] = mt, op[row + j] = ht;
            cp[s] = ct, np_[s] = nt, mp[s] = mt, hp[s] = ht;
          }
        }
      });
    }
  });
  return {out, h, c, n, m, gates, cs, ns, ms};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> slstm_backward(
    const c10::optional<Tensor>& g_out, const c10::optional<Tensor>& g_hn, const c10::optional<Tensor>& g_cn,
    const c10::optional<Tensor>& g_nn, const c10::optional<Tensor>& g_mn, const c10::optional<Tensor>& g_gates,
    const c10::optional<Tensor>& g_cs, const c10::optional<Tensor>& g_ns, const c10::optional<Tensor>& g_ms,
    const Tensor& w_hh, const Tensor& h0, const Tensor& c0, const Tensor& n0, const Tensor& m0,
    const c10::optional<Tensor>& lengths, bool reverse, bool exp_forget, const Tensor& out, const Tensor& gates,
    const Tensor& cs, const Tensor& ns, const Tensor& ms) {
  const int64_t T = out.size(0), B = out.size(1), H = out.size(2);
  const Steps steps = make_steps(T, B, reverse, lengths);
  auto opts = out.options();
  // Running gradients of the state after the step being processed; they start as the final state's.
  auto start = [&](const c10::optional<Tensor>& g) {
    return g.has_value() && g->defined() ? g->contiguous().clone() : at::zeros({B, H}, opts);
  };
  Tensor dh = start(g_hn), dc = start(g_cn), dn = start(g_nn), dm = start(g_mn);
  Tensor dG = at::zeros({T, B, 4 * H}, opts);
  Tensor h_prev = at::zeros({T, B, H}, opts);  // h_{t-1} of every active (t, b): dW_hh's right factor
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
    const T_ NEG_INF = -std::numeric_limits<T_>::infinity();
    for (int64_t k = T - 1; k >= 0; --k) {
      const int64_t t = steps.at(k);
      at::parallel_for(0, B, row_grain(H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          if (!steps.active(t, b)) continue;
          const int64_t tp = steps.prev(t, b);
          const int64_t row = (t * B + b) * H;
          const T_* hprev = tp < 0 ? h0p + b * H : outp + (tp * B + b) * H;
          const T_* cprev = tp < 0 ? c0p + b * H : csp + (tp * B + b) * H;
          const T_* nprev = tp < 0 ? n0p + b * H : nsp + (tp * B + b) * H;
          const T_* mprev = tp < 0 ? m0p + b * H : msp + (tp * B + b) * H;
          const T_* g = gp + (t * B + b) * 6 * H;
          const T_* gg_row = ggp ? ggp + (t * B + b) * 6 * H : nullptr;
          T_* dg = dGp + (t * B + b) * 4 * H;
          std::copy(hprev, hprev + H, hpp + row);
          for (int64_t j = 0; j < H; ++j) {
            const int64_t s = b * H + j;
            const T_ i = g[j], f = g[H + j], z = g[2 * H + j], o = g[3 * H + j], ip = g[4 * H + j], fp = g[5 * H + j];
            const T_ ct = csp[row + j], nt = nsp[row + j];
            const T_ dht = dhp[s] + (gop ? gop[row + j] : T_(0));
            T_ dct = dcp[s] + (gcp ? gcp[row + j] : T_(0));
            T_ dnt = dnp[s] + (gnp ? gnp[row + j] : T_(0));
            const T_ dmt_in = dmp[s] + (gmp ? gmp[row + j] : T_(0));
            // h = o c / n
            const T_ dout = dht * ct / nt + (gg_row ? gg_row[3 * H + j] : T_(0));
            dct += dht * o / nt;
            dnt -= dht * o * ct / (nt * nt);
            // c = f' c_prev + i' z,  n = f' n_prev + i'
            const T_ df = dct * cprev[j] + dnt * nprev[j] + (gg_row ? gg_row[H + j] : T_(0));
            const T_ di = dct * z + dnt + (gg_row ? gg_row[j] : T_(0));
            const T_ dz = dct * i + (gg_row ? gg_row[2 * H + j] : T_(0));
            // i' = exp(ĩ − m), f' = exp(a − m), m = max(a, ĩ)
            const T_ lf = exp_forget ? fp : log_sigmoid(fp);
            const bool has_prev = nprev[j] > 0;
            const T_ a = lf + (has_prev ? mprev[j] : NEG_INF);
            T_ dip = di * i + (gg_row ? gg_row[4 * H + j] : T_(0));
            T_ da = df * f;
            const T_ dmt = dmt_in - di * i - df * f;
            if (a > ip) {
              da += dmt;
            } else if (a < ip) {
              dip += dmt;
            } else {
              da += dmt / 2, dip += dmt / 2;
            }
            // a = log f + m̂
            const T_ dfp = (exp_forget ? da : da * sigmoid(-fp)) + (gg_row ? gg_row[5 * H + j] : T_(0));
            dg[j] = dip, dg[H + j] = dfp, dg[2 * H + j] = dz * (1 - z * z), dg[3 * H + j] = dout * o * (1 - o);
            dcp[s] = dct * f, dnp[s] = dnt * f, dmp[s] = has_prev ? da : T_(0);
          }
        }
      });
      at::mm_out(dh_rec, dG[t], w);  // (B, H) = dG[t] W_hh
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
      "slstm_backward(Tensor? g_out, Tensor? g_hn, Tensor? g_cn, Tensor? g_nn, Tensor? g_mn, Tensor? g_gates, "
      "Tensor? g_cs, Tensor? g_ns, Tensor? g_ms, Tensor w_hh, Tensor h0, Tensor c0, Tensor n0, Tensor m0, "
      "Tensor? lengths, bool reverse, bool exp_forget, Tensor out, Tensor gates, Tensor cs, Tensor ns, Tensor ms) "
      "-> (Tensor d_xp, Tensor d_w_hh, Tensor d_h0, Tensor d_c0, Tensor d_n0, Tensor d_m0)");
}

TORCH_LIBRARY_IMPL(lstmkit_xlstm, CPU, m) {
  m.impl("slstm_forward", &slstm_forward);
  m.impl("slstm_backward", &slstm_backward);
}
