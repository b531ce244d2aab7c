// The output projection (lm_head): next-token logits from the final, normalized hidden states.
//
// Under weights=q4 the table is kept as int8. Once the layers are 4-bit the lm_head is a step's largest
// single read (SmolLM2: 49152 x 576), and int8 is half of bfloat16's bytes.
//   - On a CPU with AVX512-VNNI (vocab divisible by 16): one scale per 32 weights (GGUF's Q8_0 layout, so a
//     Q8_0 table comes back exactly), read by vnni_gemv's int8 kernel for products of a few rows (decode
//     steps) and by Rows; more rows expand it to bfloat16 first.
//   - Elsewhere: one scale per vocabulary row (w = code * scale), read by LibTorch's int8 weight-only CPU
//     kernel (ATen _weight_int8pack_mm, the kernel torchao uses) on bfloat16 activations; more rows expand it.
//     A tied model's embedding then reads its rows from a second, Q8_0-style copy, since an error in an
//     embedding row reaches every layer.
// The rounding (half a step of the row's or group's largest weight / 127) is of the order of bfloat16's; the
// parity test holds q4 logits to the same bound. Together the copies take about the bytes of the bfloat16
// table they replace. Otherwise the table is kept as given.
//
// Ownership: owns (or shares, with the embedding) its tensors. Thread safety: immutable after Create; Logits
// and Rows may run concurrently.
#ifndef KVC_COMPRESSOR_MODEL_OUTPUT_HEAD_H_
#define KVC_COMPRESSOR_MODEL_OUTPUT_HEAD_H_

#include <cstdint>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "compressor/model/vnni_gemv.h"

namespace kvc {

class OutputHead {
 public:
  // Products of at most this many rows use the int8 copy when there is one.
  static constexpr int64_t kInt8MaxRows = 32;

  OutputHead() = default;

  // The embedding copy's group along the hidden dimension.
  static constexpr int64_t kRowGroup = 32;

  struct Options {
    bool int8 = false;  // keep the table as int8 (CPU only; ignored elsewhere)
    bool rows = false;  // under int8, also the grouped copy that Rows reads (a tied embedding)
    vnni_gemv::Kernels kernels = vnni_gemv::Kernels::kAuto;  // under int8, the few-row kernel
  };

  // `table` [vocab, hidden] (any float dtype, any device). INVALID_ARGUMENT when Options::rows needs a hidden
  // size that kRowGroup does not divide.
  static absl::StatusOr<OutputHead> Create(const torch::Tensor& table, Options options);

  // x [n, hidden] (any float dtype) -> [n, vocab] float32.
  torch::Tensor Logits(const torch::Tensor& x) const;

  // Rows `ids` ([n] int64) of the table: [n, hidden] in `dtype`. Under int8, only with Options::rows.
  torch::Tensor Rows(const torch::Tensor& ids, torch::ScalarType dtype) const;

  // The table as given, or undefined when kept as int8.
  const torch::Tensor& table() const { return table_; }
  // Bytes held (a table shared with the embedding counts here too).
  int64_t bytes() const;

 private:
  torch::Tensor table_;   // [vocab, hidden], or undefined under int8
  torch::Tensor codes_;        // int8 without VNNI: [vocab, hidden]
  torch::Tensor scales_;       // int8 without VNNI: [vocab] bfloat16
  torch::Tensor row_codes_;    // int8 with rows or VNNI: [vocab, hidden / kRowGroup, kRowGroup] int8
  torch::Tensor row_scales_;   // int8 with rows or VNNI: [vocab, hidden / kRowGroup, 1] float32
  vnni_gemv::Packed vnni_;     // int8 with VNNI: the grouped codes in vnni_gemv's layout
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_OUTPUT_HEAD_H_
