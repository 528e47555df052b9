// A whole stack of torch.nn.LSTM's layers in one operator call: inference, and training's recording
// forward and backward through every layer, with the stack's own parallelism (concurrency.h).
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
//
// The stack is torch.nn.LSTM's model: weights, biases, projection, lengths, dropout between layers;
// none of the variants (they run layer by layer, kernels/stack.py). Its weights come as one flat
// list, per layer k and direction d in the order k·D + d: (w_ih, w_hh, b_ih, b_hh, w_hr), absent
// ones None. Results are bit for bit those of the layers one by one (lstm_layer_infer, lstm_layer
// and lstm_layer_backward, composed as kernels/stack.py composes them).
#pragma once

#include "concurrency.h"

namespace lstmkit {
namespace {

// The flat weight list of a stack, checked, by layer, direction and slot.
struct StackWeights {
  static constexpr int64_t kSlots = 5;  // w_ih, w_hh, b_ih, b_hh, w_hr
  enum Slot : int64_t { kWih, kWhh, kBih, kBhh, kWhr };
  const c10::List<optional<Tensor>>& list;
  int64_t L, D;

  StackWeights(const c10::List<optional<Tensor>>& weights, int64_t num_layers, bool bidirectional, const Tensor& x,
               const Tensor& h0, const Tensor& c0, const char* op)
      : list(weights), L(num_layers), D(bidirectional ? 2 : 1) {
    TORCH_CHECK(L >= 1, "lstmkit: ", op, " needs num_layers >= 1, got ", L);
    TORCH_CHECK(static_cast<int64_t>(list.size()) == kSlots * L * D, "lstmkit: ", op, " expects 5 weights (w_ih, "
                "w_hh, b_ih, b_hh, w_hr) per layer and direction, ", kSlots * L * D, " for ", L, " layer(s) x ", D,
                " direction(s), got ", list.size());
    TORCH_CHECK(x.dim() == 3, "lstmkit: x must be (T, B, I), got ", x.sizes());
    TORCH_CHECK(h0.dim() == 3 && h0.size(0) == L * D && c0.dim() == 3 && c0.size(0) == L * D,
                "lstmkit: h0 and c0 must be (", L * D, ", B, ·), got ", h0.sizes(), " and ", c0.sizes());
    for (int64_t q = 0; q < L * D; ++q)
      TORCH_CHECK(has(q / D, q % D, kWhh), "lstmkit: ", op, ": layer ", q / D, " direction ", q % D, " has no w_hh");
  }
  optional<Tensor> get(int64_t k, int64_t d, Slot s) const { return list.get(kSlots * (k * D + d) + s); }
  bool has(int64_t k, int64_t d, Slot s) const {
    const optional<Tensor> t = get(k, d, s);
    return t.has_value() && t->defined();
  }
  Tensor w_hh(int64_t k, int64_t d) const { return *get(k, d, kWhh); }
  // Whether every layer runs every step product on the register tiles with no projection, the
  // condition for running layers or directions concurrently (run_concurrently). Training: the
  // backward's rule too (B >= 3 and kBackwardMinSteps steps); inference: the forward's rule, by each
  // W_hh's size.
  bool tiles_only(const Tensor& x, bool training) const {
    bool on = !training || x.size(0) >= kBackwardMinSteps;
    for (int64_t q = 0; q < L * D && on; ++q)
      on = !has(q / D, q % D, kWhr) && forward_tiles(x, training ? 0 : w_hh(q / D, q % D).numel());
    return on;
  }
};

// Inference of the stack: {out (T,B,D·P), h_n (L·D,B,P), c_n (L·D,B,H)}. layer(k, d, inp, h, c, len)
// runs layer k's direction d over inp from state (h, c) with lengths len, returning {out, h, c}: a
// bidirectional layer's directions run at once and a unidirectional stack's layers as a wavefront of
// segments (layer k's steps [t0, t1) as one call, len relative to t0) when run_concurrently allows.
template <typename LayerInfer>
std::tuple<Tensor, Tensor, Tensor> stack_infer_impl(const StackWeights& w, const Tensor& x, const Tensor& h0,
                                                    const Tensor& c0, const optional<Tensor>& lengths,
                                                    LayerInfer&& layer) {
  const int64_t L = w.L, D = w.D, T = x.size(0);
  const bool concurrent = run_concurrently(w.tiles_only(x, false));
  if (D == 1 && L >= 2 && T >= kWavefrontMinSteps && concurrent) {
    std::vector<Tensor> outs(L), hs(L), cs(L);
    for (int64_t k = 0; k < L; ++k) {
      outs[k] = at::empty({T, x.size(1), w.w_hh(k, 0).size(1)}, x.options());
      hs[k] = h0.select(0, k), cs[k] = c0.select(0, k);
    }
    const Tensor len_all = lengths.has_value() && lengths->defined() ? lengths->to(at::kLong) : Tensor();
    run_wavefront(L, T, [&](int64_t k, int64_t t0, int64_t t1) {
      at::AutoDispatchBelowADInplaceOrView worker_guard;
      const Tensor inp = (k == 0 ? x : outs[k - 1]).narrow(0, t0, t1 - t0);
      const optional<Tensor> len =
          len_all.defined() ? optional<Tensor>((len_all - t0).clamp(0, t1 - t0)) : optional<Tensor>();
      auto r = layer(k, int64_t(0), inp, hs[k], cs[k], len);
      outs[k].narrow(0, t0, t1 - t0).copy_(std::get<0>(r));
      hs[k] = std::get<1>(r), cs[k] = std::get<2>(r);
    });
    return {outs[L - 1], at::stack(hs), at::stack(cs)};
  }
  std::vector<Tensor> h_n(L * D), c_n(L * D);
  Tensor inp = x;
  for (int64_t k = 0; k < L; ++k) {
    std::array<Tensor, 2> outs;
    run_directions(D, concurrent, [&](int64_t d) {
      const int64_t q = k * D + d;
      auto r = layer(k, d, inp, h0.select(0, q), c0.select(0, q), lengths);
      outs[d] = std::get<0>(r), h_n[q] = std::get<1>(r), c_n[q] = std::get<2>(r);
    });
    inp = D == 1 ? outs[0] : at::cat({outs[0], outs[1]}, 2);
  }
  return {inp, at::stack(h_n), at::stack(c_n)};
}

// The dropout mask of layer k's input (k >= 1), or undefined: masks is empty (no dropout) or holds
// L - 1 masks (T, B, D·P), already scaled by 1 / (1 - p), for layers 1 … L - 1.
inline Tensor dropout_mask(const c10::List<optional<Tensor>>& masks, int64_t k) {
  if (k == 0 || masks.size() == 0) return Tensor();
  const optional<Tensor> m = masks.get(k - 1);
  return m.has_value() && m->defined() ? *m : Tensor();
}

// What the training forward records, per layer and direction q: its output (T,B,P), activated gates
// (T,B,GH) and cell states (T,B,H), at 3q, 3q+1, 3q+2; then each layer k >= 1's input as the layer
// read it (after dropout), at 3·L·D + k - 1. An operator's outputs never alias one another, so a
// record that would be another output is empty instead and read from that output: a unidirectional
// layer's input without dropout (the output of the layer below) and a unidirectional stack's last
// output (the stack's out).
struct StackRecords {
  const std::vector<Tensor>& r;
  int64_t L, D;
  const Tensor& stack_out;
  static int64_t out_at(int64_t q) { return 3 * q; }
  static int64_t gates_at(int64_t q) { return 3 * q + 1; }
  static int64_t cells_at(int64_t q) { return 3 * q + 2; }
  static int64_t input_at(int64_t LD, int64_t k) { return 3 * LD + k - 1; }
  static int64_t size(int64_t L, int64_t D) { return 3 * L * D + L - 1; }
  const Tensor& out(int64_t q) const { return r[out_at(q)].numel() ? r[out_at(q)] : stack_out; }
  const Tensor& gates(int64_t q) const { return r[gates_at(q)]; }
  const Tensor& cells(int64_t q) const { return r[cells_at(q)]; }
  const Tensor& input(int64_t k) const { return r[input_at(L * D, k)].numel() ? r[input_at(L * D, k)] : out(k - 1); }
};

// Training's recording forward of the stack: {out (T,B,D·P), h_n, c_n, records (StackRecords)}.
// A bidirectional layer's directions run at once when run_concurrently allows. (A wavefront of a
// unidirectional stack's recording forward, segments copied into the records, measured no faster
// than the layers in order at S7: 54.3 against 54.2 ms at two threads.)
std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> stack_forward_impl(
    const StackWeights& w, const Tensor& x, const Tensor& h0, const Tensor& c0, const optional<Tensor>& lengths,
    const c10::List<optional<Tensor>>& masks) {
  const int64_t L = w.L, D = w.D, LD = L * D;
  TORCH_CHECK(masks.size() == 0 || static_cast<int64_t>(masks.size()) == L - 1, "lstmkit: lstm_stack expects no "
              "dropout masks or one per layer above the first (", L - 1, "), got ", masks.size());
  const bool concurrent = run_concurrently(w.tiles_only(x, true));
  std::vector<Tensor> records(static_cast<size_t>(StackRecords::size(L, D))), h_n(LD), c_n(LD);
  Tensor inp = x;
  for (int64_t k = 0; k < L; ++k) {
    if (k > 0) {
      const Tensor m = dropout_mask(masks, k);
      if (m.defined()) inp = inp * m;
      if (D == 2 || m.defined()) records[StackRecords::input_at(LD, k)] = inp;
    }
    std::array<Tensor, 2> outs;
    run_directions(D, concurrent, [&](int64_t d) {
      const int64_t q = k * D + d;
      auto r = lstm_forward(inp, h0.select(0, q), c0.select(0, q), w.get(k, d, StackWeights::kWih), w.w_hh(k, d),
                            w.get(k, d, StackWeights::kBih), w.get(k, d, StackWeights::kBhh),
                            w.get(k, d, StackWeights::kWhr), lengths, d == 1, false, {}, {}, {}, {}, c10::nullopt, 0.0);
      outs[d] = r[0], h_n[q] = r[1], c_n[q] = r[2];
      records[StackRecords::gates_at(q)] = r[3], records[StackRecords::cells_at(q)] = r[4];
      if (D == 2 || k < L - 1) records[StackRecords::out_at(q)] = r[0];
    });
    inp = D == 1 ? outs[0] : at::cat({outs[0], outs[1]}, 2);
  }
  for (Tensor& r : records)
    if (!r.defined()) r = at::empty({0}, x.options());  // each its own tensor: outputs never alias
  return {inp, at::stack(h_n), at::stack(c_n), records};
}

// Backward through the stack, from the gradients of out, h_n and c_n (any may be absent), top layer
// first: {dx (empty unless need_dx), dh0 (L·D,B,P), dc0 (L·D,B,H), then per layer and direction
// dw_ih, dw_hh, db (the gradient of b_ih and of b_hh alike), dw_hr (empty where absent)}. Layer k's
// output gradient is the sum of the directions' input gradients of layer k + 1, times its dropout
// mask. A bidirectional layer's directions run at once when run_concurrently allows.
std::vector<Tensor> stack_backward_impl(const StackWeights& w, const optional<Tensor>& grad_out,
                                        const optional<Tensor>& grad_h_n, const optional<Tensor>& grad_c_n,
                                        const Tensor& x, const Tensor& h0, const Tensor& c0,
                                        const optional<Tensor>& lengths, const c10::List<optional<Tensor>>& masks,
                                        const Tensor& out, const std::vector<Tensor>& recorded, bool need_dx) {
  const int64_t L = w.L, D = w.D, LD = L * D;
  TORCH_CHECK(static_cast<int64_t>(recorded.size()) == StackRecords::size(L, D), "lstmkit: lstm_stack_backward "
              "expects ", StackRecords::size(L, D), " records (lstm_stack's), got ", recorded.size());
  const StackRecords records{recorded, L, D, out};
  const bool concurrent = run_concurrently(w.tiles_only(x, true));
  auto state_grad = [](const optional<Tensor>& g, int64_t q) {
    return g.has_value() && g->defined() ? optional<Tensor>(g->select(0, q)) : optional<Tensor>();
  };
  std::vector<Tensor> dh0(LD), dc0(LD), dw(static_cast<size_t>(4 * LD));
  optional<Tensor> g = grad_out.has_value() && grad_out->defined() ? grad_out : optional<Tensor>();
  Tensor dx;
  for (int64_t k = L - 1; k >= 0; --k) {
    const Tensor inp = k == 0 ? x : records.input(k);
    const bool want_dx = k > 0 || need_dx;
    std::array<Tensor, 2> dxs;
    run_directions(D, concurrent, [&](int64_t d) {
      const int64_t q = k * D + d;
      const Tensor& out_q = records.out(q);
      const int64_t P = out_q.size(2);
      const optional<Tensor> g_d = g.has_value() ? optional<Tensor>(g->narrow(2, d * P, P)) : optional<Tensor>();
      auto r = lstm_backward(g_d, state_grad(grad_h_n, q), state_grad(grad_c_n, q), {}, {}, inp, h0.select(0, q),
                             c0.select(0, q), w.get(k, d, StackWeights::kWih), w.w_hh(k, d),
                             w.has(k, d, StackWeights::kBih), w.get(k, d, StackWeights::kWhr), lengths, d == 1, out_q,
                             records.gates(q), records.cells(q), want_dx, false, {}, {},
                             {}, {}, c10::nullopt, 0.0, {}, {}, {}, {}, {}, {});
      dxs[d] = r[0], dh0[q] = r[1], dc0[q] = r[2];
      for (int64_t j = 0; j < 4; ++j) dw[4 * q + j] = r[3 + j];
    });
    if (!want_dx) break;
    Tensor gx = D == 1 ? dxs[0] : dxs[0] + dxs[1];
    if (k == 0) {
      dx = gx;
      break;
    }
    const Tensor m = dropout_mask(masks, k);
    g = m.defined() ? gx * m : gx;
  }
  std::vector<Tensor> result{dx, at::stack(dh0), at::stack(dc0)};
  result.insert(result.end(), dw.begin(), dw.end());
  return result;
}

}  // namespace
}  // namespace lstmkit
