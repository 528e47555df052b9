// Parallelism across a stack's layers and directions: a bidirectional layer's two directions at
// once (inference and training), and a unidirectional stack's layers as a wavefront (inference),
// each on a thread.
// Part of the fused LSTM kernel: see lstm_fused.cpp for the overview and the shape legend.
#pragma once

#include "backward.h"

namespace lstmkit {
namespace {

// Test knob (set_concurrency): 0 auto, 1 always (given two threads), -1 never.
std::atomic<int> g_concurrency{0};
// For tests (concurrent_runs): how many layers' directions or stacks' wavefronts ran concurrently.
std::atomic<int64_t> g_concurrent_runs{0};

// Whether a stack runs its directions (or layers) concurrently, one thread each. One direction's
// step loop splits every step across the threads and joins them before the next: one fork/join
// per step, a large share of a step of a few µs (S8: 16 × 128) and a real one of larger steps
// (S6: 32 × 256). Two directions are independent until the layer's output is concatenated, and
// layer k + 1 needs only the steps of layer k it has reached; on a thread each they run their steps
// with no join at all. A thread's loops then run on that thread alone (a parallel_for inside a
// parallel region runs inline).
//
// Only when every product is the kernel's own register tiles (tiled: float32 on AVX2, see
// use_tiled) and no layer projects: a tile computes each unit the same way on any split of the
// threads and for any run of steps, so the outputs are bit for bit those of the layers in order
// (tests/test_fused_stack.py pins them). BLAS blocks its products by the threads it has (MKL's sgemm
// of a projected layer's h W_hr^T gives other low bits on one thread than on two), so those run in
// order.
//
// Auto: two or three threads. With more, one thread per direction or layer would leave the rest
// idle, where each layer's split loop uses them all.
inline bool run_concurrently(bool tiles_only) {
  const int mode = g_concurrency.load(std::memory_order_relaxed);
  if (mode < 0 || !tiles_only || at::in_parallel_region()) return false;
  const int threads = at::get_num_threads();
  return mode > 0 ? threads >= 2 : threads == 2 || threads == 3;
}

// Calls run(d) for the D directions d = 0 … D - 1: at once when concurrent, else in order. run sets
// any thread-local state it needs (a worker thread has none of the caller's).
template <typename F>
void run_directions(int64_t D, bool concurrent, F&& run) {
  if (D == 2 && concurrent) {
    g_concurrent_runs.fetch_add(1, std::memory_order_relaxed);
    at::parallel_for(0, 2, 1, [&](int64_t d0, int64_t d1) {
      for (int64_t d = d0; d < d1; ++d) run(d);
    });
    return;
  }
  for (int64_t d = 0; d < D; ++d) run(d);
}

// Steps per segment of a wavefront: the later layer waits for one segment of the earlier before it
// starts, so short segments keep that wait short, while each segment is one call of the layer's
// loop (a few µs of set-up). About 1/32 of the sequence.
inline int64_t wavefront_segment(int64_t T) { return std::max<int64_t>(1, (T + 31) / 32); }

// A wavefront below this many steps would only add waiting: decoding (T = 1) runs layers in order.
constexpr int64_t kWavefrontMinSteps = 8;

// Runs the L layers of a unidirectional stack as a wavefront over the threads: a thread takes the
// next layer not yet taken and runs it segment by segment, layer(k, t0, t1) computing steps
// [t0, t1) of layer k (its state carried from the segment before), each segment once layer k - 1
// has finished it. Layers are taken in order and each runs to its end, so a layer's predecessor is
// always running or done (no deadlock, however many threads OpenMP grants). A layer that throws
// stops the others' waits, and the error reaches the caller.
template <typename F>
void run_wavefront(int64_t L, int64_t T, F&& layer) {
  const int64_t seg = wavefront_segment(T);
  std::vector<std::atomic<int64_t>> done(static_cast<size_t>(L));
  for (auto& d : done) d.store(0);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  const int64_t threads = std::min<int64_t>(L, at::get_num_threads());
  g_concurrent_runs.fetch_add(1, std::memory_order_relaxed);
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t k = next.fetch_add(1); k < L; k = next.fetch_add(1)) {
      try {
        for (int64_t t0 = 0; t0 < T; t0 += seg) {
          const int64_t t1 = std::min(T, t0 + seg);
          if (k > 0) {
            for (int spins = 0; done[k - 1].load(std::memory_order_acquire) < t1; ++spins) {
              TORCH_CHECK(!failed.load(std::memory_order_relaxed), "lstmkit: an earlier layer failed");
              if (spins > 64) std::this_thread::yield();
            }
          }
          layer(k, t0, t1);
          done[k].store(t1, std::memory_order_release);
        }
      } catch (...) {
        failed.store(true);
        throw;
      }
    }
  });
}

}  // namespace
}  // namespace lstmkit
