// The variants a step reads (Variants), zoneout masks as the loops read them, and the mask sampler.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "vec_math.h"

namespace lstmkit {
namespace {

// ---------------------------------------------------------------------------------------------
// The variants (see reference.lstm_cell_step, the readable twin). Each is off when its pointer
// is null; all masks are sampled by the module and arrive as contiguous tensors.
//   coupled (CIFG): G = 3 gates packed i|g|o, f = 1 - i.
//   peephole: pre_i += p_i ⊙ c_{t-1}, pre_f += p_f ⊙ c_{t-1}, pre_o += p_o ⊙ c̃_t (rows i, f, o;
//     coupled: i, o).
//   recurrent dropout: the recurrent GEMM reads h_{t-1} ⊙ h_keep (B, P), one mask per sequence.
//   zoneout: c_t = lerp(c̃_t, c_{t-1}, z_c[t]), h_t = lerp(h̃_t, h_{t-1}, z_h[t]); h̃_t is
//     computed from c̃_t (the cell value before zoneout), C keeps c_t (the carried state).
//   LayerNorm: over all GH features of a row, the input projection LN(x W_ih^T)·w_ih' + b_ih'
//     (one pass over all steps before the loop, forward_impl) and inside the loop the recurrent
//     projection LN(h W_hh^T)·w_hh' + b_hh' (then b_ih + b_hh as always), and c̃_t before its
//     tanh: h̃_t = o ⊙ tanh(LN(c̃_t)·w_c + b_c).
//     Recording forward keeps the normalized values and 1/σ per row, which is what backward
//     needs. (A caller may instead pass the input projection as x, without w_ih and w_ih'.)

// A zoneout mask (T, B, n), read one step's (B, n) block at a time. It arrives as floats (masks
// injected by tests and callers), as bool (the module's training samples: a quarter of the
// bytes, and no float copy is made of them; each step's block is widened into a small scratch),
// or as a stride-0 expansion of one rate (eval mode: the scratch is filled once, nothing
// (T, B, n) is ever materialized).
template <typename S>
struct Mask {
  const S* f = nullptr;        // float (T, B, n)
  const uint8_t* u = nullptr;  // bool (T, B, n)
  S* scratch = nullptr;        // (B, n): the widened block, or the constant rate
  int64_t block = 0;           // B * n
  int64_t width = 0;           // n
  bool constant = false;
  explicit operator bool() const { return f != nullptr || u != nullptr || constant; }
  // Step t's (B, n) block. Call once per step from serial code: it may rewrite the scratch.
  const S* step(int64_t t) const { return step_rows(t, 0, width ? block / width : 0); }
  // The same block where only rows [r0, r1) are read: row parts (see row_parts), each on its own
  // thread at its own step, widen only their own rows of the scratch.
  const S* step_rows(int64_t t, int64_t r0, int64_t r1) const {
    if (f) return f + t * block;
    if (constant) return scratch;
    const uint8_t* src = u + t * block;
    for (int64_t q = r0 * width; q < r1 * width; ++q) scratch[q] = src[q] ? S(1) : S(0);
    return scratch;
  }
};

inline bool is_constant_mask(const Tensor& m) {
  if (!m.defined() || m.numel() == 0) return false;
  for (int64_t d = 0; d < m.dim(); ++d)
    if (m.stride(d) != 0 && m.size(d) != 1) return false;
  return true;
}

// The scratch a mask needs (see Mask), or undefined for a plain float mask.
inline Tensor mask_scratch(const Tensor& m, int64_t B, int64_t n, const Tensor& x) {
  if (!m.defined()) return Tensor();
  if (m.scalar_type() == at::kBool) return at::empty({B, n}, x.options());
  if (is_constant_mask(m)) return at::full({B, n}, m.reshape({-1})[0].item(), x.options());
  return Tensor();
}

template <typename S>
Mask<S> make_mask(const Tensor& m, const Tensor& scratch, int64_t B, int64_t n) {
  Mask<S> k;
  if (!m.defined()) return k;
  k.block = B * n;
  k.width = n;
  k.scratch = scratch.defined() ? scratch.data_ptr<S>() : nullptr;
  if (m.scalar_type() == at::kBool) {
    k.u = reinterpret_cast<const uint8_t*>(m.data_ptr<bool>());
  } else if (is_constant_mask(m)) {
    k.constant = true;
  } else {
    k.f = m.data_ptr<S>();
  }
  return k;
}

template <typename scalar_t>
struct Variants {
  bool coupled = false;
  const scalar_t* peep = nullptr;    // (3, H) or (2, H) coupled
  const scalar_t* h_keep = nullptr;  // (B, P)
  Mask<scalar_t> zone_h;             // (T, B, P)
  Mask<scalar_t> zone_c;             // (T, B, H)
  const scalar_t *ln_hw = nullptr, *ln_hb = nullptr;  // (GH,) LayerNorm of the recurrent projection
  const scalar_t *ln_cw = nullptr, *ln_cb = nullptr;  // (H,) LayerNorm of c̃ before its tanh
  double eps = 1e-5;
};

// A zoneout mask (see lstmkit/kernels/masks.py, which computes the same numbers with torch ops):
// entry i is True when lane i % 4 (16 bits) of splitmix64((seed + i / 4) · φ), as int16, is below
// level - 32768. Counter-based, so every chunk of the parallel loop computes its own entries and
// the result does not depend on the thread count.
Tensor sample_zone_mask(const std::vector<int64_t>& shape, int64_t level, int64_t seed) {
  TORCH_CHECK(level >= 0 && level < 65536, "sample_zone_mask: level must be in [0, 65536), got ", level);
  Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kBool));
  const int64_t n = out.numel();
  bool* o = out.data_ptr<bool>();
  const int thr = static_cast<int>(level) - 32768;
  at::parallel_for(0, (n + 3) / 4, 16384, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      uint64_t z = (static_cast<uint64_t>(seed) + static_cast<uint64_t>(q)) * 0x9E3779B97F4A7C15ULL;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      for (int64_t l = 0; l < 4 && 4 * q + l < n; ++l) o[4 * q + l] = static_cast<int16_t>(z >> (16 * l)) < thr;
    }
  });
  return out;
}

}  // namespace
}  // namespace lstmkit
