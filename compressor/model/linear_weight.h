// The weight of one linear layer, y = x W^T (+ b), kept in memory in one of three formats (ModelOptions::weights):
//
//   float  W in the model dtype; every product is one dense GEMM. The reference: logits match transformers.
//   q4     W in 4-bit groups of 32 along the input dimension with a float scale and minimum per group
//          (w = scale * code + min, GGUF's Q4_1 layout: a Q4_1 file's weights keep their codes and minima,
//          and their scales to float rounding). About 1.9 bytes per weight instead of 4 (the codes one per
//          byte for the expansion below, the kernel's packing, the group constants). Products of a few rows
//          (decode) read the 4-bit form, so a step reads 8x fewer weight bytes: on a CPU with AVX512-VNNI
//          with vnni_gemv.h (activations quantized per group of 32 to int8, integer products), elsewhere
//          with LibTorch's int4 CPU kernel (ATen _weight_int4pack_mm_for_cpu, the kernel torchao uses) on
//          bfloat16 activations. Products of many rows (prefill chunks) expand the groups to the model dtype
//          and run the dense GEMM, which is exact and faster there.
//          CPU only: CUDA's int4 kernels want another packing.
//   int8   W as int8 with one scale per output row (1 byte per weight); every product quantizes its
//          activations per row to two int8 digits and runs the int8 GEMM (int8_rows.h: oneDNN through
//          at::_int_mm, four multiply-adds per instruction on AVX512-VNNI where float32 does one): SmolLM2's
//          prefill runs 1.25-1.5x and Finch 1.2x faster than under float on 2 cores, and a decode step reads a
//          quarter of float32's weight bytes. Products of a few rows take vnni_gemv::Int8RowSums on the same
//          rows where the CPU has VNNI (each row read once for both digits), for the same sums. The weights'
//          rounding (at most half a step of a row's largest value / 127) is what moves the logits; the parity
//          test states the bound. CPU only.
//
// Ownership: owns its tensors. Thread safety: immutable after Create; Apply may run concurrently.
#ifndef KVC_COMPRESSOR_MODEL_LINEAR_WEIGHT_H_
#define KVC_COMPRESSOR_MODEL_LINEAR_WEIGHT_H_

#include <cstdint>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/model/int8_rows.h"
#include "compressor/model/vnni_gemv.h"

namespace kvc {

enum class WeightFormat { kFloat, kQ4, kInt8 };

// "float", "q4" or "int8"; INVALID_ARGUMENT otherwise, naming them.
absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name);
const char* WeightFormatName(WeightFormat format);

class LinearWeight {
 public:
  // Products of at most this many rows use a 4-bit kernel under q4; more rows expand the weight.
  static constexpr int64_t kKernelMaxRows = 32;
  // The q4 group size along the input dimension (GGUF's block size).
  static constexpr int64_t kGroup = 32;

  LinearWeight() = default;

  // `w` [out, in] (any float dtype, any device), `bias` [out] or undefined. `dtype` is the model's compute
  // dtype. q4 and int8 need a CPU device, q4 also `in` divisible by kGroup (INVALID_ARGUMENT naming `name`
  // otherwise). `kernels` picks q4's and int8's few-row kernels: vnni_gemv's where usable, else LibTorch's.
  static absl::StatusOr<LinearWeight> Create(const std::string& name, const torch::Tensor& w,
                                             const torch::Tensor& bias, WeightFormat format,
                                             torch::ScalarType dtype,
                                             vnni_gemv::Kernels kernels = vnni_gemv::Kernels::kAuto);

  // x [n, in] in the model dtype -> [n, out] in the model dtype.
  torch::Tensor Apply(const torch::Tensor& x) const;

  // The dtype the product of `rows` rows reads its activations in: bfloat16 for LibTorch's int4 kernel, else
  // the model dtype. A caller that produces x in it saves a conversion.
  torch::ScalarType InputType(int64_t rows) const;
  // x [n, in] in any float dtype -> [n, out] in the dtype the product computed in (bfloat16 from LibTorch's
  // int4 kernel without a bias, float32 from vnni_gemv's and under int8, else the model dtype). The values are
  // Apply's; only the final conversion is left to a caller that would fuse it (a residual add promotes to
  // float32 on its own).
  torch::Tensor Product(const torch::Tensor& x) const;

  // W as a dense [out, in] tensor in the model dtype (a view under float, a fresh tensor under q4).
  torch::Tensor Dense() const;

  WeightFormat format() const { return format_; }
  // Bytes held for the weight (and bias).
  int64_t bytes() const;

 private:
  // True when a product of `rows` rows runs q4's int4 kernel.
  bool UsesKernel(int64_t rows) const;
  // True when it runs the one-row VNNI kernel (vnni_gemv.h) instead.
  bool UsesVnni(int64_t rows) const;

  WeightFormat format_ = WeightFormat::kFloat;
  torch::ScalarType dtype_ = torch::kFloat32;
  torch::Tensor dense_;        // float: [out, in] in dtype_
  torch::Tensor bias_;         // [out] in dtype_, or undefined
  torch::Tensor codes_;        // q4: [out, in / kGroup, kGroup] uint8 in 0..15
  torch::Tensor scale_, min_;  // q4: [out, in / kGroup, 1] float32
  // q4 on a CPU with AVX512-VNNI (out divisible by 16): the groups in vnni_gemv's layout. Elsewhere
  // LibTorch's: packed_ [out, in / 2] uint8 and scale_zero_ [in / kGroup, out, 2] bfloat16, where
  // w = (code - 8) * scale + zero.
  vnni_gemv::Packed vnni_;
  torch::Tensor packed_;
  torch::Tensor scale_zero_;
  int8_rows::Rows int8_;       // int8: [out, in] codes, [out] scales (and code sums on VNNI CPUs)
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_LINEAR_WEIGHT_H_
