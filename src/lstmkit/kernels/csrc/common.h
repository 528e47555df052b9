// What every part of the fused LSTM kernel includes: ATen, the vector types, the standard library.
#pragma once

#include <torch/extension.h>

#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <ATen/cpu/vec/vec.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <cmath>
#include <cstring>
#include <vector>

namespace lstmkit {

using at::Tensor;
using c10::optional;

}  // namespace lstmkit
