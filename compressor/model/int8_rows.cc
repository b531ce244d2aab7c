#include "compressor/model/int8_rows.h"

#include <ATen/Parallel.h>
#include <ATen/ops/_int_mm.h>

#include <algorithm>
#include <cstring>

#include "compressor/model/cpu_vectors.h"
#include "compressor/model/vnni_gemv.h"

namespace kvc::int8_rows {
namespace {

using cpu_vectors::Floats16;
using cpu_vectors::kLanes;
using cpu_vectors::Load16;
using cpu_vectors::Store16;
using Ints16 = int32_t __attribute__((vector_size(64)));
using Bytes16 = int8_t __attribute__((vector_size(16)));

// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, ties to even (the
// FPU's rounding mode), in plain vector arithmetic.
constexpr float kRound = 12582912.0f;

// The int32 sums of one block of rows (both digits): small enough to be reused from the heap and to stay in
// cache between the GEMM and the rescale.
constexpr int64_t kBlockBytes = int64_t{4} << 20;

KVC_CPU_CLONES float AbsMax(const float* x, int64_t k) {
  Floats16 m = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    Floats16 v = Load16(x + i);
    Floats16 a = v < 0 ? -v : v;
    m = a > m ? a : m;
  }
  float out = 0;
  for (int64_t l = 0; l < kLanes; ++l) out = m[l] > out ? m[l] : out;
  for (; i < k; ++i) {
    const float a = x[i] < 0 ? -x[i] : x[i];
    out = a > out ? a : out;
  }
  return out;
}

// The integer nearest v, as a float; v is a float or a vector of them.
template <typename V>
[[gnu::always_inline]] inline V Nearest(V v) {
  return (v + kRound) - kRound;
}

[[gnu::always_inline]] inline Bytes16 ToBytes(Floats16 v) {
  return __builtin_convertvector(__builtin_convertvector(v, Ints16), Bytes16);
}

// hi = round(v) with v = x * inv and, when `lo` is given, lo = round((v - hi) * kLowBase). v - hi is exact (hi
// is the integer nearest v), so only the roundings to integers round.
KVC_CPU_CLONES void QuantizeRow(const float* x, float inv, int64_t k, int8_t* hi, int8_t* lo) {
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    Floats16 v = Load16(x + i) * inv;
    Floats16 h = Nearest(v);
    Bytes16 hb = ToBytes(h);
    std::memcpy(hi + i, &hb, sizeof hb);
    if (lo != nullptr) {
      Bytes16 lb = ToBytes(Nearest((v - h) * kLowBase));
      std::memcpy(lo + i, &lb, sizeof lb);
    }
  }
  for (; i < k; ++i) {
    const float v = x[i] * inv;
    const float h = Nearest(v);
    hi[i] = static_cast<int8_t>(static_cast<int32_t>(h));
    if (lo != nullptr) lo[i] = static_cast<int8_t>(static_cast<int32_t>(Nearest((v - h) * kLowBase)));
  }
}

// out[j] = (float(acc[j]) (+ float(low[j]) * (1 / kLowBase))) * (sa * sb[j]) (+ bias[j]), low optional.
KVC_CPU_CLONES void RescaleRow(const int32_t* acc, const int32_t* low, float sa, const float* sb,
                               const float* bias, int64_t m, float* out) {
  constexpr float kLowStep = 1.0f / kLowBase;
  int64_t j = 0;
  for (; j + kLanes <= m; j += kLanes) {
    Ints16 a;
    std::memcpy(&a, acc + j, sizeof a);
    Floats16 sum = __builtin_convertvector(a, Floats16);
    if (low != nullptr) {
      Ints16 b;
      std::memcpy(&b, low + j, sizeof b);
      sum += __builtin_convertvector(b, Floats16) * kLowStep;
    }
    Floats16 y = sum * (Load16(sb + j) * sa);
    if (bias != nullptr) y += Load16(bias + j);
    Store16(out + j, y);
  }
  for (; j < m; ++j) {
    float sum = static_cast<float>(acc[j]);
    if (low != nullptr) sum += static_cast<float>(low[j]) * kLowStep;
    float y = sum * (sb[j] * sa);
    if (bias != nullptr) y += bias[j];
    out[j] = y;
  }
}

}  // namespace

float QuantizeValues(const float* x, int64_t k, int8_t* codes, int8_t* low) {
  const float amax = AbsMax(x, k);
  if (amax == 0) {
    std::memset(codes, 0, k);
    if (low != nullptr) std::memset(low, 0, k);
    return 0;
  }
  QuantizeRow(x, 127.0f / amax, k, codes, low);
  return amax / 127.0f;
}

Rows Quantize(const torch::Tensor& x, Digits digits) {
  TORCH_CHECK(x.dim() == 2 && x.device().is_cpu(), "int8_rows::Quantize: x must be a 2-D CPU tensor");
  const torch::Tensor xf = x.to(torch::kFloat32).contiguous();
  const int64_t n = xf.size(0), k = xf.size(1);
  const bool two = digits == Digits::kTwo;
  Rows rows{torch::empty({n, k}, torch::kInt8), two ? torch::empty({n, k}, torch::kInt8) : torch::Tensor(),
            torch::empty({n}, torch::kFloat32), torch::Tensor()};
  const float* src = xf.data_ptr<float>();
  int8_t* codes = rows.codes.data_ptr<int8_t>();
  int8_t* low = two ? rows.low.data_ptr<int8_t>() : nullptr;
  float* scales = rows.scales.data_ptr<float>();
  at::parallel_for(0, n, cpu_vectors::RowGrain(k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scales[r] = QuantizeValues(src + r * k, k, codes + r * k, two ? low + r * k : nullptr);
    }
  });
  return rows;
}

torch::Tensor Product(const Rows& a, const Rows& b, const torch::Tensor& bias) {
  TORCH_CHECK(a.codes.size(1) == b.codes.size(1), "int8_rows::Product: inner dimensions differ");
  TORCH_CHECK(!b.low.defined(), "int8_rows::Product: the second operand has one digit");
  const int64_t n = a.codes.size(0), m = b.codes.size(0);
  const bool two = a.low.defined();
  const bool few = b.code_sums.defined() && n <= kFewRows;
  const torch::Tensor bf = bias.defined() ? bias.to(torch::kFloat32).contiguous() : torch::Tensor();
  torch::Tensor out = torch::empty({n, m}, torch::kFloat32);
  // The int32 sums go through a buffer of a few MB, a block of rows at a time, rather than one [2n, m]
  // tensor: a fresh tensor of tens of MB is mapped and faulted in page by page on every call (that cost as
  // much as the GEMM), while a small one is reused from the heap and stays in cache for the rescale.
  if (n == 0 || m == 0) return out;
  const int64_t block = std::clamp<int64_t>(kBlockBytes / (2 * m * int64_t{sizeof(int32_t)}), 1, n);
  torch::Tensor sums = torch::empty({two ? 2 * block : block, m}, torch::kInt32);
  const torch::Tensor wt = b.codes.t();
  const float* sa = a.scales.data_ptr<float>();
  const float* sb = b.scales.data_ptr<float>();
  const float* bp = bf.defined() ? bf.data_ptr<float>() : nullptr;
  float* dst = out.data_ptr<float>();
  for (int64_t start = 0; start < n; start += block) {
    const int64_t len = std::min(block, n - start);
    torch::Tensor hi_sums = sums.narrow(0, 0, len);
    torch::Tensor lo_sums = two ? sums.narrow(0, block, len) : torch::Tensor();
    if (few) {
      vnni_gemv::Int8RowSums(a.codes.narrow(0, start, len), two ? a.low.narrow(0, start, len) : torch::Tensor(),
                             b.codes, b.code_sums, hi_sums, lo_sums);
    } else {
      at::_int_mm_out(hi_sums, a.codes.narrow(0, start, len), wt);
      if (two) at::_int_mm_out(lo_sums, a.low.narrow(0, start, len), wt);
    }
    const int32_t* hi = sums.data_ptr<int32_t>();
    const int32_t* lo = two ? hi + block * m : nullptr;
    at::parallel_for(0, len, cpu_vectors::RowGrain(m), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        RescaleRow(hi + r * m, two ? lo + r * m : nullptr, sa[start + r], sb, bp, m, dst + (start + r) * m);
      }
    });
  }
  return out;
}

}  // namespace kvc::int8_rows
