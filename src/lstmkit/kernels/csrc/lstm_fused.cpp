// The fused CPU LSTM kernel: one layer, one direction, forward and hand-written backward
// through time, registered with PyTorch as the operators torch.ops.lstmkit.* (bottom of this
// file; their fake kernels, autograd and vmap rules are in lstmkit/kernels/fused_ops.py).
//
// One translation unit in parts, each a header included in this order:
//   common.h      ATen, vector types, standard library
//   gemm.h        BLAS on raw pointers (or ATen) and the per-step product
//   vec_math.h    activations on at::vec, lanes (vector body + scalar tail), row helpers
//   masks.h       Variants (what a step reads of the variants), zoneout masks, the mask sampler
//   cell.h        the cell: every variant's equations, forward and backward, LayerNorm row maths
//   tiles.h       packed weight layouts and register-tiled products
//   layer_args.h  checking and unpacking a layer call
//   forward.h     the forward step loops and forward_impl (recording and inference)
//   grad_gemm.h   the backward's chunk products (input and weight gradients) on the register tiles
//   backward.h    the backward step loop and the chunked weight / input gradients
//   concurrency.h directions at once and layers as a wavefront, on a thread each
//   stack.h       a whole stack of plain layers in one call: inference, training forward and backward
//   lstm_fused.cpp (this file) the operators and the Python module's test knobs
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
// Forward: the step is either tiled (float32 on AVX2: each thread computes x_t W_ih^T + h_{t-1}
// W_hh^T for its hidden units in registers, one chain of multiply-adds per pre-activation over
// packed W_ih^T and W_hh^T panels, and runs their cells on it, see forward_loop_tiled) or, for
// float64, other CPUs and LayerNorm, the input projection is one product per chunk of ~512 rows
// of steps into G (BLAS, or LayerNorm's tiles) and per step the recurrent product is added into
// G[t] (BLAS, or LayerNorm's tiles, then normalized) before a row-split gate pass (forward_loop).
// Either way a fused pass adds the biases and applies the activations, and G ends up holding the
// activated gates: exactly what backward needs and what return_gates returns. C keeps every cell
// state. The inference entry (lstm_infer) runs the same loops without recording, on one step's G
// (tiled) or one reused chunk of it, and keeps no C. Tiled steps split each step's hidden units
// across the threads, or give each thread its own batch rows for every step (row_parts in tiles.h).
//
// Backward: in reverse, a fused pass (split by rows) turns dh_t, dc_t into the pre-activation
// gradients dG[t] (T, B, 4H), and one product per step gives dh_{t-1} = dG[t] W_hh (register
// tiles over packed W_hh panels where the forward tiles, else BLAS; on the tiles each thread may
// take its own rows through every step, as the forward). After each chunk of kBackwardChunkRows
// rows of steps, the chunk's weight, bias and input gradients are products (grad_gemm.h on the
// tiles, else BLAS) and its buffers are reused (see lstm_backward). (Fusing the cell backward into that
// product's tiles, as the forward does, measured slower: S1 training 78.6 vs 70.3 ms, S3 17.4
// vs 15.6; so did a column split with one BLAS call per thread, since removed.)
//
// Lengths (right-padded batches): a row is active at step t when t < length. Inactive rows
// keep their state, and their outputs, gates and cell states are zero; in reverse a row starts
// at its own last step. This is the reference backend's contract, bit for bit in the masks.
#include "stack.h"

using namespace lstmkit;  // the bindings below name the kernel's parts

// ---------------------------------------------------------------------------------------------
// The operators PyTorch knows (torch.ops.lstmkit.*): the kernel's only entry points for the layer
// itself, so eager, torch.compile, torch.export and AOTInductor all call the same forward and the
// same hand-written backward. Their fake (shape-only) kernels and the autograd formula are
// registered from Python (lstmkit/kernels/fused_ops.py); value checks that need data (finite
// input) run in eager in Python, while these checks on shapes and lengths run wherever the op does.
//
// One layer in one direction is described by the same leading arguments in all three schemas
// (the "layer description"): x, h0, c0, the weights as torch.nn.LSTM names them, the variants'
// parameters (LayerNorm in the order ih, hh, c), lengths, the masks, reverse, coupled, ln_eps.
// Absent results are empty tensors (an operator returns no undefined tensor).

namespace lstmkit {
namespace {
namespace ops {

#define LSTMKIT_LAYER_SCHEMA                                                                              \
  "Tensor x, Tensor h0, Tensor c0, Tensor? w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, " \
  "Tensor? peephole, Tensor? ln_ih_weight, Tensor? ln_ih_bias, Tensor? ln_hh_weight, Tensor? ln_hh_bias, " \
  "Tensor? ln_c_weight, Tensor? ln_c_bias, Tensor? lengths, Tensor? h_keep, Tensor? zone_h, Tensor? zone_c, " \
  "bool reverse, bool coupled, float ln_eps"

// Lengths must lie in [1, T]: checked in the operators, so that compiled and exported code rejects
// them too.
void check_lengths_in_range(const optional<Tensor>& lengths, int64_t T, int64_t B) {
  if (!lengths.has_value() || !lengths->defined()) return;
  TORCH_CHECK(lengths->dim() == 1 && lengths->numel() == B, "lstmkit: lengths must have shape (", B, ",), got ",
              lengths->sizes());
  if (lengths->numel() == 0) return;
  const Tensor l = lengths->to(at::kLong);
  const int64_t lo = l.min().item<int64_t>(), hi = l.max().item<int64_t>();
  TORCH_CHECK(lo >= 1 && hi <= T, "lstmkit: lengths must lie in [1, ", T, "] (the padded sequence length), got "
              "values from ", lo, " to ", hi);
}

struct Layer {  // the layer description, as the schemas above give it
  const Tensor& x; const Tensor& h0; const Tensor& c0;
  const optional<Tensor>& w_ih; const Tensor& w_hh; const optional<Tensor>& b_ih; const optional<Tensor>& b_hh;
  const optional<Tensor>& w_hr; const optional<Tensor>& peephole;
  const optional<Tensor>& ln_ih_w; const optional<Tensor>& ln_ih_b; const optional<Tensor>& ln_hh_w;
  const optional<Tensor>& ln_hh_b; const optional<Tensor>& ln_c_w; const optional<Tensor>& ln_c_b;
  const optional<Tensor>& lengths; const optional<Tensor>& h_keep; const optional<Tensor>& zone_h;
  const optional<Tensor>& zone_c; bool reverse; bool coupled; double eps;

  bool has(const optional<Tensor>& t) const { return t.has_value() && t->defined(); }
  // The kernel's LayerNorm list: {w_hh', b_hh', w_c, b_c[, w_ih', b_ih']}, or none.
  optional<std::vector<Tensor>> layer_norm() const {
    if (!has(ln_hh_w)) {
      TORCH_CHECK(!has(ln_hh_b) && !has(ln_c_w) && !has(ln_c_b) && !has(ln_ih_w) && !has(ln_ih_b),
                  "lstmkit: LayerNorm needs all of ln_hh_weight/bias and ln_c_weight/bias");
      return c10::nullopt;
    }
    TORCH_CHECK(has(ln_hh_b) && has(ln_c_w) && has(ln_c_b), "lstmkit: LayerNorm needs all of ln_hh_weight/bias and ln_c_weight/bias");
    std::vector<Tensor> v{*ln_hh_w, *ln_hh_b, *ln_c_w, *ln_c_b};
    TORCH_CHECK(has(ln_ih_w) == has(ln_ih_b), "lstmkit: give both ln_ih_weight and ln_ih_bias or neither");
    if (has(ln_ih_w)) v.push_back(*ln_ih_w), v.push_back(*ln_ih_b);
    return v;
  }
  void check_lengths() const { check_lengths_in_range(lengths, x.size(0), x.size(1)); }
};

#define LSTMKIT_LAYER_PARAMS                                                                                    \
  const Tensor &x, const Tensor &h0, const Tensor &c0, const optional<Tensor> &w_ih, const Tensor &w_hh,        \
      const optional<Tensor> &b_ih, const optional<Tensor> &b_hh, const optional<Tensor> &w_hr,                 \
      const optional<Tensor> &peephole, const optional<Tensor> &ln_ih_w, const optional<Tensor> &ln_ih_b,       \
      const optional<Tensor> &ln_hh_w, const optional<Tensor> &ln_hh_b, const optional<Tensor> &ln_c_w,         \
      const optional<Tensor> &ln_c_b, const optional<Tensor> &lengths, const optional<Tensor> &h_keep,          \
      const optional<Tensor> &zone_h, const optional<Tensor> &zone_c, bool reverse, bool coupled, double eps
#define LSTMKIT_LAYER_ARGS                                                                                      \
  Layer{x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, peephole, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, \
        lengths, h_keep, zone_h, zone_c, reverse, coupled, eps}

inline Tensor or_empty(const Tensor& t, const Tensor& like) { return t.defined() ? t : at::empty({0}, like.options()); }
inline optional<Tensor> nonempty(const Tensor& t) {
  return t.defined() && t.numel() > 0 ? optional<Tensor>(t) : optional<Tensor>();
}

// Recording forward: {out (T,B,P), h_n (B,P), c_n (B,H), gates (T,B,GH) activated, c (T,B,H),
// and what LayerNorm's backward needs: ln_h (T,B,GH), ln_rh (T,B), ln_c (T,B,H), ln_rc (T,B),
// ln_i (T,B,GH), ln_ri (T,B) (empty when that normalization is off)}.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer(
    LSTMKIT_LAYER_PARAMS) {
  const Layer a = LSTMKIT_LAYER_ARGS;
  a.check_lengths();
  auto r = lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, coupled, peephole, h_keep, zone_h,
                        zone_c, a.layer_norm(), eps);
  for (auto& t : r) t = or_empty(t, x);
  return {r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]};
}

// W_hh^T (P, gates·H) or W_ih^T (I, gates·H) as the tiled steps' gate-interleaved panels.
Tensor pack_whh_op(const Tensor& whh_t, int64_t gates) {
  TORCH_CHECK(whh_t.dim() == 2 && whh_t.is_contiguous() && (gates == 3 || gates == 4) && whh_t.size(1) % gates == 0,
              "pack_whh: expected a contiguous (K, gates·H) W_hh^T or W_ih^T and 3 or 4 gates, got ", whh_t.sizes(),
              ", ", gates);
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(whh_t.scalar_type(), "lstmkit_pack_whh", [&] { out = pack_whh<scalar_t>(whh_t, gates); });
  return out;
}

Tensor pack_cols_op(const Tensor& m) {
  TORCH_CHECK(m.dim() == 2 && m.is_contiguous(), "pack_cols: expected a contiguous 2-d matrix, got ", m.sizes());
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "lstmkit_pack_cols", [&] { out = pack_cols<scalar_t, 4>(m); });
  return out;
}

// The weights as the loops read them (W_hh^T, b_ih + b_hh, W_hr^T, the tiles' packed copies),
// for inference calls that bring none: compiled, exported and AOTInductor graphs, where fused.py's
// eager caches are not on the path. Without this, every one-step decoding call of a compiled model
// would transpose and pack its weights again (more than the step itself costs). An entry is kept
// while its source tensors are the same tensors at the same version (every in-place change bumps
// it), holding them so their memory cannot be reused by another; the least recently used of
// kCapacity entries goes first. Inference tensors carry no version and are never cached.
class PreparedCache {
 public:
  template <typename Make>
  Tensor get(int64_t tag, const std::vector<Tensor>& sources, Make&& make) {
    for (const Tensor& t : sources)
      if (t.defined() && t.is_inference()) return make();
    std::lock_guard<std::mutex> lock(mu_);
    for (Entry& e : entries_) {
      if (e.tag == tag && matches(e, sources)) {
        e.used = ++clock_;
        return e.value;
      }
    }
    Tensor value = make();
    if (entries_.size() >= kCapacity) {
      auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                     [](const Entry& p, const Entry& q) { return p.used < q.used; });
      entries_.erase(oldest);
    }
    Entry e{tag, sources, {}, value, ++clock_};
    for (const Tensor& t : sources) e.versions.push_back(version(t));
    entries_.push_back(std::move(e));
    return value;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }
  int64_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(entries_.size());
  }

 private:
  static constexpr size_t kCapacity = 16;
  struct Entry {
    int64_t tag;
    std::vector<Tensor> sources;
    std::vector<int64_t> versions;
    Tensor value;
    uint64_t used;
  };
  static int64_t version(const Tensor& t) {
    return t.defined() ? static_cast<int64_t>(t.unsafeGetTensorImpl()->version_counter().current_version()) : -1;
  }
  static bool matches(const Entry& e, const std::vector<Tensor>& sources) {
    if (e.sources.size() != sources.size()) return false;
    for (size_t q = 0; q < sources.size(); ++q) {
      const Tensor &a = e.sources[q], &b = sources[q];
      if (a.defined() != b.defined()) return false;
      if (a.defined() && (!a.is_same(b) || e.versions[q] != version(b))) return false;
    }
    return true;
  }
  std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

PreparedCache& prepared_cache() {
  static PreparedCache cache;
  return cache;
}

enum PreparedTag : int64_t { kWhhT, kBias, kWhrT, kWhhPacked3, kWhhPacked4, kWhhCols, kWihPacked3, kWihPacked4 };

// Forward only, nothing recorded: {out, h_n, c_n}. The last six arguments are the weights as the
// loops read them, when the caller already has them (fused.py caches them per weight version in
// eager): W_hh^T (P, GH), b_ih + b_hh (GH,), W_hr^T (H, P) and the tiles' packed copies. Each that
// is absent is made here from the weights (what compiled and exported graphs do).
// layer_infer's work once its lengths are checked (lstm_stack_infer checks them once for all layers).
// Sets its own dispatch guard: it also runs on a worker thread, which has none of the caller's.
std::tuple<Tensor, Tensor, Tensor> infer_checked(const Layer& a, const optional<Tensor>& whh_t,
                                                 const optional<Tensor>& bias, const optional<Tensor>& whr_t,
                                                 const optional<Tensor>& whh_packed, const optional<Tensor>& whh_cols,
                                                 const optional<Tensor>& wih_packed) {
  at::AutoDispatchBelowADInplaceOrView guard;
  const Tensor &x = a.x, &w_hh = a.w_hh;
  const optional<Tensor> &w_ih = a.w_ih, &b_ih = a.b_ih, &b_hh = a.b_hh, &w_hr = a.w_hr;
  const bool coupled = a.coupled;
  PreparedCache& cache = prepared_cache();
  auto given = [&](const optional<Tensor>& t) { return a.has(t) ? *t : Tensor(); };
  const Tensor w_ih_ = given(w_ih), b_ih_ = given(b_ih), b_hh_ = given(b_hh), w_hr_ = given(w_hr);
  const Tensor wt = a.has(whh_t) ? *whh_t : cache.get(kWhhT, {w_hh}, [&] { return w_hh.t().contiguous(); });
  const Tensor b = a.has(bias) || !b_ih_.defined() ? given(bias)
                                                   : cache.get(kBias, {b_ih_, b_hh_}, [&] { return summed_bias(b_ih, b_hh); });
  const Tensor rt = a.has(whr_t) || !w_hr_.defined() ? given(whr_t)
                                                     : cache.get(kWhrT, {w_hr_}, [&] { return w_hr_.t().contiguous(); });
  Tensor whh_pk = given(whh_packed), whh_cl = given(whh_cols), wih_pk = given(wih_packed);
  if (!a.has(whh_t) && forward_tiles(x, w_hh.numel())) {  // a call with no prepared weights: the tiles' copies from the cache too
    const bool ln = a.has(a.ln_hh_w);
    const int64_t NG = coupled ? 3 : 4;
    if (ln && !whh_cl.defined()) whh_cl = cache.get(kWhhCols, {w_hh}, [&] { return pack_cols_op(wt); });
    if (!ln && !whh_pk.defined())
      whh_pk = cache.get(NG == 3 ? kWhhPacked3 : kWhhPacked4, {w_hh}, [&] { return pack_whh_op(wt, NG); });
    if (w_ih_.defined() && !wih_pk.defined())
      wih_pk = cache.get(NG == 3 ? kWihPacked3 : kWihPacked4, {w_ih_},
                         [&] { return pack_whh_op(w_ih_.t().contiguous(), NG); });
  }
  auto r = forward_impl(false, x, a.h0, a.c0, opt(w_ih), wt, b, rt, a.lengths, a.reverse, coupled, a.peephole,
                        a.h_keep, a.zone_h, a.zone_c, a.layer_norm(), a.eps, whh_pk, whh_cl, wih_pk);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor> layer_infer(LSTMKIT_LAYER_PARAMS, const optional<Tensor>& whh_t,
                                               const optional<Tensor>& bias, const optional<Tensor>& whr_t,
                                               const optional<Tensor>& whh_packed, const optional<Tensor>& whh_cols,
                                               const optional<Tensor>& wih_packed) {
  const Layer a = LSTMKIT_LAYER_ARGS;
  a.check_lengths();
  return infer_checked(a, whh_t, bias, whr_t, whh_packed, whh_cols, wih_packed);
}

// The whole stack's operators (stack.h): a plain stack's inference, and training's recording forward
// and backward through every layer, each in one call. One call instead of L·D is what one-step
// decoding needs (each operator call from Python costs tens of µs, more than a small step), and it
// is where the layers and directions can run concurrently (concurrency.h).
//
// Inference: {out (T,B,D·P), h_n (L·D,B,P), c_n (L·D,B,H)}, bit for bit what lstm_layer_infer
// gives layer by layer. prepared is empty, or holds per layer and direction (whh_t, bias, whr_t,
// whh_packed, wih_packed) as lstm_layer_infer takes them.
std::tuple<Tensor, Tensor, Tensor> stack_infer(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                               const c10::List<optional<Tensor>>& weights, int64_t num_layers,
                                               bool bidirectional, const optional<Tensor>& lengths,
                                               const c10::List<optional<Tensor>>& prepared) {
  const StackWeights w(weights, num_layers, bidirectional, x, h0, c0, "lstm_stack_infer");
  TORCH_CHECK(prepared.size() == 0 || prepared.size() == weights.size(), "lstmkit: lstm_stack_infer expects no "
              "prepared weights or 5 per layer and direction (", weights.size(), "), got ", prepared.size());
  check_lengths_in_range(lengths, x.size(0), x.size(1));
  at::AutoDispatchBelowADInplaceOrView guard;
  const optional<Tensor> none;
  auto prep = [&](int64_t k, int64_t d, int64_t j) {
    return prepared.size() ? prepared.get(StackWeights::kSlots * (k * w.D + d) + j) : none;
  };
  return stack_infer_impl(w, x, h0, c0, lengths, [&](int64_t k, int64_t d, const Tensor& inp, const Tensor& h,
                                                     const Tensor& c, const optional<Tensor>& len) {
    using S = StackWeights;
    const optional<Tensor> w_ih = w.get(k, d, S::kWih), w_hh = w.get(k, d, S::kWhh), b_ih = w.get(k, d, S::kBih),
                           b_hh = w.get(k, d, S::kBhh), w_hr = w.get(k, d, S::kWhr);
    const Layer a{inp, h, c, w_ih, *w_hh, b_ih, b_hh, w_hr, none, none, none, none, none, none, none,
                  len, none, none, none, d == 1, false, 0.0};
    return infer_checked(a, prep(k, d, 0), prep(k, d, 1), prep(k, d, 2), prep(k, d, 3), none, prep(k, d, 4));
  });
}

// Training's forward: {out, h_n, c_n, records}, records as stack.h's StackRecords lays them out
// (what lstm_stack_backward needs). dropout_masks: none, or one (T,B,D·P) per layer above the
// first, already scaled by 1 / (1 - p) (sampled by the caller, as torch's dropout samples them).
std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> stack(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                              const c10::List<optional<Tensor>>& weights,
                                                              int64_t num_layers, bool bidirectional,
                                                              const optional<Tensor>& lengths,
                                                              const c10::List<optional<Tensor>>& dropout_masks) {
  const StackWeights w(weights, num_layers, bidirectional, x, h0, c0, "lstm_stack");
  check_lengths_in_range(lengths, x.size(0), x.size(1));
  at::AutoDispatchBelowADInplaceOrView guard;
  return stack_forward_impl(w, x, h0, c0, lengths, dropout_masks);
}

// Training's backward through the stack: {dx, dh0, dc0, then per layer and direction dw_ih, dw_hh,
// db (b_ih's and b_hh's), dw_hr}, empty where absent (dx also when need_dx is false).
std::vector<Tensor> stack_backward(const optional<Tensor>& grad_out, const optional<Tensor>& grad_h_n,
                                   const optional<Tensor>& grad_c_n, const Tensor& x, const Tensor& h0,
                                   const Tensor& c0, const c10::List<optional<Tensor>>& weights, int64_t num_layers,
                                   bool bidirectional, const optional<Tensor>& lengths,
                                   const c10::List<optional<Tensor>>& dropout_masks, const Tensor& out,
                                   at::TensorList records, bool need_dx) {
  const StackWeights w(weights, num_layers, bidirectional, x, h0, c0, "lstm_stack_backward");
  at::AutoDispatchBelowADInplaceOrView guard;
  auto r = stack_backward_impl(w, grad_out, grad_h_n, grad_c_n, x, h0, c0, lengths, dropout_masks, out,
                               records.vec(), need_dx);
  for (auto& t : r) t = or_empty(t, x);
  return r;
}

// Backward through time of `layer`, given the gradients of its outputs (any may be absent) and
// what it recorded: {dx, dh0, dc0, dw_ih, dw_hh, db (the gradient of b_ih and of b_hh alike),
// dw_hr, dpeephole, dln_ih_weight, dln_ih_bias, dln_hh_weight, dln_hh_bias, dln_c_weight,
// dln_c_bias}, empty where the layer has no such input (dx also when need_dx is false).
std::vector<Tensor> layer_backward(const optional<Tensor>& grad_out, const optional<Tensor>& grad_h_n,
                                   const optional<Tensor>& grad_c_n, const optional<Tensor>& grad_gates,
                                   const optional<Tensor>& grad_c, LSTMKIT_LAYER_PARAMS, const Tensor& out,
                                   const Tensor& gates, const Tensor& c, const Tensor& ln_h, const Tensor& ln_rh,
                                   const Tensor& ln_c, const Tensor& ln_rc, const Tensor& ln_i, const Tensor& ln_ri,
                                   bool need_dx) {
  const Layer a = LSTMKIT_LAYER_ARGS;
  const bool has_bias = a.has(b_ih);
  auto r = lstm_backward(grad_out, grad_h_n, grad_c_n, grad_gates, grad_c, x, h0, c0, w_ih, w_hh, has_bias, w_hr,
                         lengths, reverse, out, gates, c, need_dx, coupled, peephole, h_keep, zone_h, zone_c,
                         a.layer_norm(), eps, nonempty(ln_h), nonempty(ln_rh), nonempty(ln_c), nonempty(ln_rc),
                         nonempty(ln_i), nonempty(ln_ri));
  // r: dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dpeep, d w_hh', d b_hh', d w_c, d b_c, d w_ih', d b_ih'.
  // Several LayerNorm sums are views of one buffer and db may be one of them: an operator's
  // outputs never alias, so each is its own tensor.
  std::vector<Tensor> v{r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[12], r[13], r[8], r[9], r[10], r[11]};
  for (size_t q = 5; q < v.size(); ++q)
    if (v[q].defined()) v[q] = v[q].clone();
  if (!need_dx) v[0] = Tensor();
  for (auto& t : v) t = or_empty(t, x);
  return v;
}

}  // namespace ops
}  // namespace
}  // namespace lstmkit

TORCH_LIBRARY(lstmkit, m) {
  m.def("lstm_layer(" LSTMKIT_LAYER_SCHEMA ") -> (Tensor out, Tensor h_n, Tensor c_n, Tensor gates, Tensor c, "
        "Tensor ln_h, Tensor ln_rh, Tensor ln_c, Tensor ln_rc, Tensor ln_i, Tensor ln_ri)");
  m.def("lstm_layer_infer(" LSTMKIT_LAYER_SCHEMA ", Tensor? whh_t=None, Tensor? bias=None, Tensor? whr_t=None, "
        "Tensor? whh_packed=None, Tensor? whh_cols=None, Tensor? wih_packed=None) -> (Tensor out, Tensor h_n, Tensor c_n)");
  m.def("lstm_layer_backward(Tensor? grad_out, Tensor? grad_h_n, Tensor? grad_c_n, Tensor? grad_gates, "
        "Tensor? grad_c, " LSTMKIT_LAYER_SCHEMA ", Tensor out, Tensor gates, Tensor c, Tensor ln_h, Tensor ln_rh, "
        "Tensor ln_c, Tensor ln_rc, Tensor ln_i, Tensor ln_ri, bool need_dx) -> Tensor[]");
  m.def("lstm_stack(Tensor x, Tensor h0, Tensor c0, Tensor?[] weights, int num_layers, bool bidirectional, "
        "Tensor? lengths, Tensor?[] dropout_masks) -> (Tensor out, Tensor h_n, Tensor c_n, Tensor[] records)");
  m.def("lstm_stack_backward(Tensor? grad_out, Tensor? grad_h_n, Tensor? grad_c_n, Tensor x, Tensor h0, Tensor c0, "
        "Tensor?[] weights, int num_layers, bool bidirectional, Tensor? lengths, Tensor?[] dropout_masks, "
        "Tensor out, Tensor[] records, bool need_dx) -> Tensor[]");
  m.def("lstm_stack_infer(Tensor x, Tensor h0, Tensor c0, Tensor?[] weights, int num_layers, bool bidirectional, "
        "Tensor? lengths, Tensor?[] prepared) -> (Tensor out, Tensor h_n, Tensor c_n)");
  m.def("pack_whh(Tensor whh_t, int gates) -> Tensor");
  m.def("pack_cols(Tensor m) -> Tensor");
}

TORCH_LIBRARY_IMPL(lstmkit, CPU, m) {
  m.impl("lstm_layer", &lstmkit::ops::layer);
  m.impl("lstm_layer_infer", &lstmkit::ops::layer_infer);
  m.impl("lstm_layer_backward", &lstmkit::ops::layer_backward);
  m.impl("lstm_stack_infer", &lstmkit::ops::stack_infer);
  m.impl("lstm_stack", &lstmkit::ops::stack);
  m.impl("lstm_stack_backward", &lstmkit::ops::stack_backward);
  m.impl("pack_whh", &lstmkit::ops::pack_whh_op);
  m.impl("pack_cols", &lstmkit::ops::pack_cols_op);
}

namespace {
// The setter of a test knob: "auto" sets 0, "on" 1 (for knobs that have it), "off" -1.
auto knob_setter(std::atomic<int>& knob, const char* what, bool has_on) {
  return [&knob, what, has_on](const std::string& mode) {
    TORCH_CHECK(mode == "auto" || mode == "off" || (has_on && mode == "on"), what, " mode must be auto",
                has_on ? ", on" : "", " or off, got ", mode);
    knob = mode == "auto" ? 0 : mode == "on" ? 1 : -1;
  };
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit fused CPU LSTM layer: forward and hand-written backward through time";
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
  m.def("set_tiled", knob_setter(g_tiled, "tiled", true),
        "for tests: the tiled step products (auto: float32 with AVX2, B >= 3 or large W_hh; see use_tiled)");
  m.def("set_backward_chunk", [](int64_t rows) {
        TORCH_CHECK(rows >= 0, "backward chunk rows must be >= 0 (0: the default), got ", rows);
        g_backward_chunk_rows = rows;
      }, "for tests: rows per chunk of backward's step gradients (0: the default, kBackwardChunkRows)");
  m.def("set_concurrency", knob_setter(g_concurrency, "concurrency", true),
        "for tests: whether lstm_stack_infer runs directions at once and layers as a wavefront (auto: at two or "
        "three threads)");
  m.def("concurrent_runs", [] { return g_concurrent_runs.load(); },
        "for tests: how many layers ran their directions at once, or stacks their layers as a wavefront, so far");
  m.def("set_avx512", knob_setter(g_avx512, "avx512", false),
        "for tests: whether the register tiles take 8 rows at a time in AVX-512 registers (auto: when the CPU has them)");
  m.def("uses_avx512", [] { return avx512_tiles(); }, "whether the register tiles run on AVX-512 here");
  m.def("set_row_split", knob_setter(g_row_split, "row split", true),
        "for tests: whether a tiled forward gives each thread its own batch rows for every step (on, auto: see "
        "row_parts) or splits each step's hidden units (off)");
  m.def("row_split_runs", [] { return g_row_split_runs.load(); },
        "for tests: how many forward and backward loops gave each thread its own batch rows so far");
  m.def("set_grad_tiles", knob_setter(g_grad_tiles, "grad tiles", false),
        "for tests: whether backward's input and weight gradients run on the register tiles (auto) or BLAS (off)");
  m.def("set_fused_projection", knob_setter(g_fused_projection, "fused projection", false),
        "for tests: whether tiled steps project x_t in their own register tiles (auto) or the input projection "
        "runs as a pass of its own by chunks (off)");
  m.def("uses_tiled", [](bool float64, int64_t B, int64_t whh_entries) {
        return float64 ? use_tiled<double>(B, whh_entries) : use_tiled<float>(B, whh_entries);
      }, "whether a forward of this dtype, batch size and W_hh size runs tiled steps (set_tiled and the build decide)",
      py::arg("float64"), py::arg("B"), py::arg("whh_entries") = 0);
  m.def("pack_whh", &lstmkit::ops::pack_whh_op,
        "W_hh^T or W_ih^T packed for the tiled steps (lstm_layer_infer's whh_packed and wih_packed)");
  m.def("pack_cols", &lstmkit::ops::pack_cols_op,
        "a (K, N) matrix packed in column panels for the tiled products (lstm_layer_infer's whh_cols: LayerNorm's W_hh^T)");
  m.def("prepared_cache_size", [] { return lstmkit::ops::prepared_cache().size(); },
        "for tests: entries in the operators' cache of prepared weights (calls that bring none)");
  m.def("clear_prepared_cache", [] { lstmkit::ops::prepared_cache().clear(); },
        "for tests: empty the operators' cache of prepared weights");
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
