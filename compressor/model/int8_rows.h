// Products of int8 rows: the weight quantized per output row once at load, the activations per row when
// they arrive, the integer products on oneDNN's int8 GEMM (LibTorch's at::_int_mm, which runs on
// AVX512-VNNI or AVX2 here), and the int32 sums scaled back to float32 in one pass.
//
// Why int8 and this form: on a CPU with VNNI an int8 GEMM does four multiply-adds where float32 does one, and
// the projections are most of a prefill's arithmetic. One scale per row (absmax / 127, the row's largest
// value kept exactly) factors out of each dot product, which group scales would not. Activations get two
// int8 digits (codes + low / 254), twice the integer work for ~1/64000 of the row's largest value as the
// rounding: one digit of activations moved SmolLM2's logits by up to 0.28 of the largest (top-1 agreement
// 80%), and the error is spread over the channels (keeping the 32 largest in float32 still left 0.10); with
// two the weights' own rounding is all that is left. Rounding is to nearest, ties to even.
//
// Thread safety: pure functions; rows are split across LibTorch's intra-op threads when there are many.
#ifndef KVC_COMPRESSOR_MODEL_INT8_ROWS_H_
#define KVC_COMPRESSOR_MODEL_INT8_ROWS_H_

#include <torch/types.h>

namespace kvc::int8_rows {

// The second digit's weight: row i is (codes[i] + low[i] / kLowBase) * scales[i].
constexpr float kLowBase = 254.0f;

struct Rows {
  torch::Tensor codes;   // [n, k] int8 in -127..127, contiguous
  torch::Tensor low;     // [n, k] int8 in -127..127 (the second digit), or undefined (one digit)
  torch::Tensor scales;  // [n] float32
  // [n] int32, each row's sum of codes, or undefined. Weight rows that carry it (vnni_gemv::RowSums, on a CPU
  // with AVX512-VNNI) take products of up to kFewRows activation rows on vnni_gemv::Int8RowSums, which reads
  // them once for both digits, where oneDNN's GEMM read them once per digit and was slowest at one row.
  torch::Tensor code_sums;
};

constexpr int64_t kFewRows = 32;

enum class Digits { kOne, kTwo };

// x [n, k] on CPU, any float dtype and strides. A row of zeros gets scale 0 and codes 0. The first digit is
// round(x * (127 / absmax)); the second round((that product - the first digit) * kLowBase).
Rows Quantize(const torch::Tensor& x, Digits digits = Digits::kOne);

// One row of Quantize on raw memory: x [k] float32 -> codes [k], and low [k] when not null; returns the scale.
float QuantizeValues(const float* x, int64_t k, int8_t* codes, int8_t* low);

// a [n, k] (one or two digits) and b [m, k] (one digit) -> (a's rows) . (b's rows)^T [n, m] float32, plus
// `bias` [m] (float32 or undefined). The integer sums are exact, whichever kernel takes them; the result is
// (sums of codes + sums of low * (1 / kLowBase)) * (a.scales[i] * b.scales[j]) in float32.
torch::Tensor Product(const Rows& a, const Rows& b, const torch::Tensor& bias);

}  // namespace kvc::int8_rows

#endif  // KVC_COMPRESSOR_MODEL_INT8_ROWS_H_
