// Checking and unpacking a layer call: lengths, masks, variants, LayerNorm tensors.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "tiles.h"

namespace lstmkit {
namespace {

inline Tensor opt(const optional<Tensor>& t) { return t.has_value() && t->defined() ? t->contiguous() : Tensor(); }

// Per-sequence lengths as contiguous int64 (B,), or an undefined tensor when all run T steps.
inline Tensor lengths_int64(const optional<Tensor>& lengths, int64_t B) {
  if (!lengths.has_value() || !lengths->defined()) return Tensor();
  Tensor len = lengths->to(at::kLong).contiguous();
  TORCH_CHECK(len.numel() == B, "fused lstm: lengths has ", len.numel(), " entries for batch ", B);
  return len;
}

// zh_s, zc_s: the masks' scratch (mask_scratch).
template <typename scalar_t>
Variants<scalar_t> make_variants(bool coupled, const Tensor& peep, const Tensor& h_keep, const Tensor& zone_h,
                                 const Tensor& zone_c, const std::vector<Tensor>& ln, double eps, int64_t B,
                                 int64_t H, int64_t P, const Tensor& zh_s, const Tensor& zc_s) {
  auto ptr = [](const Tensor& t) -> const scalar_t* { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
  Variants<scalar_t> v;
  v.coupled = coupled;
  v.peep = ptr(peep);
  v.h_keep = ptr(h_keep);
  v.zone_h = make_mask<scalar_t>(zone_h, zh_s, B, P);
  v.zone_c = make_mask<scalar_t>(zone_c, zc_s, B, H);
  if (!ln.empty()) v.ln_hw = ptr(ln[0]), v.ln_hb = ptr(ln[1]), v.ln_cw = ptr(ln[2]), v.ln_cb = ptr(ln[3]);
  v.eps = eps;
  return v;
}

// A zoneout mask as given: contiguous unless it is a stride-0 expansion of one rate (see Mask).
inline Tensor zone_mask(const optional<Tensor>& m) {
  if (!m.has_value() || !m->defined()) return Tensor();
  return is_constant_mask(*m) ? *m : m->contiguous();
}

void check_variants(int64_t T, int64_t B, int64_t H, int64_t P, bool coupled, const Tensor& x, const Tensor& peep,
                    const Tensor& h_keep, const Tensor& zone_h, const Tensor& zone_c) {
  auto check = [&](const Tensor& t, at::IntArrayRef want, const char* what, bool may_be_bool = false) {
    if (!t.defined()) return;
    TORCH_CHECK(t.sizes() == want, "fused lstm: ", what, " is ", t.sizes(), ", expected ", want);
    TORCH_CHECK(t.scalar_type() == x.scalar_type() || (may_be_bool && t.scalar_type() == at::kBool), "fused lstm: ",
                what, " is ", t.scalar_type(), ", expected ", x.scalar_type(), may_be_bool ? " or bool" : "");
  };
  check(peep, {coupled ? 2 : 3, H}, "the peephole weight");
  check(h_keep, {B, P}, "the recurrent-dropout mask");
  check(zone_h, {T, B, P}, "the zoneout mask of h", true);
  check(zone_c, {T, B, H}, "the zoneout mask of c", true);
}

// A call's variant tensors, checked and as the loops read them (masks with their scratch), and
// its lengths: what forward_impl and lstm_backward both unpack first.
struct CallTensors {
  Tensor peep, hk, zh, zc, zh_s, zc_s, len_c;
  const int64_t* len = nullptr;  // (B,) or null: every row runs T steps
};

inline CallTensors call_tensors(int64_t T, int64_t B, int64_t H, int64_t P, bool coupled, const Tensor& x,
                                const optional<Tensor>& peephole, const optional<Tensor>& h_keep,
                                const optional<Tensor>& zone_h, const optional<Tensor>& zone_c,
                                const optional<Tensor>& lengths) {
  CallTensors c;
  c.peep = opt(peephole), c.hk = opt(h_keep), c.zh = zone_mask(zone_h), c.zc = zone_mask(zone_c);
  check_variants(T, B, H, P, coupled, x, c.peep, c.hk, c.zh, c.zc);
  c.zh_s = mask_scratch(c.zh, B, P, x), c.zc_s = mask_scratch(c.zc, B, H, x);
  c.len_c = lengths_int64(lengths, B);
  c.len = c.len_c.defined() ? c.len_c.data_ptr<int64_t>() : nullptr;
  return c;
}

// The LayerNorm gains and biases {w_hh', b_hh', w_c, b_c} and, when the kernel normalizes the
// input projection too, {w_ih', b_ih'}; contiguous; empty when off.
std::vector<Tensor> ln_params(const optional<std::vector<Tensor>>& ln, int64_t GH, int64_t H, const Tensor& x) {
  if (!ln.has_value()) return {};
  TORCH_CHECK(ln->size() == 4 || ln->size() == 6, "fused lstm: expected 4 LayerNorm tensors (hh weight, hh bias, "
              "c weight, c bias), or 6 with the input projection's weight and bias, got ", ln->size());
  std::vector<Tensor> out;
  for (size_t q = 0; q < ln->size(); ++q) {
    const int64_t n = q == 2 || q == 3 ? H : GH;
    TORCH_CHECK((*ln)[q].numel() == n && (*ln)[q].scalar_type() == x.scalar_type(), "fused lstm: LayerNorm tensor ", q,
                " is ", (*ln)[q].sizes(), " ", (*ln)[q].scalar_type(), ", expected (", n, ",) ", x.scalar_type());
    out.push_back((*ln)[q].contiguous());
  }
  return out;
}

}  // namespace
}  // namespace lstmkit
