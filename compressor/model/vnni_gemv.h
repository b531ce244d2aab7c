// One activation row times quantized weights on AVX512-VNNI: the products of a decode step under
// weights=q4 (4-bit groups, w = scale * code + min, GGUF's Q4_1) and the int8 lm_head (8-bit groups,
// w = scale * code, GGUF's Q8_0), both with groups of 32 inputs; and the integer sums of weights=int8's rows
// (Int8RowSums).
//
// Why its own kernel: a step's weights come from memory, and LibTorch's kernels for them
// (at::_weight_int4pack_mm_for_cpu, at::_weight_int8pack_mm) convert each code to float and multiply in
// float32: at one row they ran at ~15 G multiply-adds/s per core here, below what memory delivers, and
// together took ~60% of a SmolLM2 step with a compressed cache. oneDNN's int4/int8 weight decompression is not
// among libtorch_cpu's exported symbols, and Debian's oneDNN (2.6) predates it. Here the activation row is
// quantized per group of 32 to int8 (scale absmax / 127, as GGUF's Q8 blocks), and vpdpbusd multiplies
// 64 codes by 64 activations and sums them in fours in one instruction:
//   y[r] = sum over groups g of  scale[r,g] * dx[g] * sum_k code[r,k] * xq[k]   (+ min[r,g] * dx[g] * sum_k xq[k]).
// The integer sums are exact; the activations' rounding (at most half a step of a group's largest value /
// 127) is of the size of the bfloat16 rounding LibTorch's kernels apply to them.
//
// Thread safety: pure functions; tiles of 16 output rows (Product) and blocks of weight rows (Int8RowSums) are
// split across LibTorch's intra-op threads.
#ifndef KVC_COMPRESSOR_MODEL_VNNI_GEMV_H_
#define KVC_COMPRESSOR_MODEL_VNNI_GEMV_H_

#include <cstdint>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc::vnni_gemv {

// Inputs per group (GGUF's block size) and output rows per kernel tile.
constexpr int64_t kGroup = 32;
constexpr int64_t kTileRows = 16;

enum class Codes { kQ4, kInt8 };

// The weight in the kernel's layout: one stream of blocks, a tile's groups one after another, so that a
// thread reads each tile front to back.
struct Packed {
  Codes codes = Codes::kQ4;
  // uint8 [out / 16, in / 32, BlockBytes(codes)], per tile and group:
  //   q4:   for each run of eight inputs 8p..8p+7, 64 bytes where byte 4r+q holds row r's code for input 8p+q
  //         (low nibble) and 8p+4+q (high nibble), so that one load and two masks give two vpdpbusd operands;
  //         then the 16 rows' scales and the 16 rows' minima as float16.
  //   int8: for each run of four inputs 4j..4j+3, 64 bytes where byte 4r+q holds row r's code for 4j+q plus
  //         128 (vpdpbusd's unsigned operand); then the 16 rows' scales as float16.
  // float16 is how GGUF stores both formats' constants: exact for a GGUF file's weights.
  torch::Tensor blocks;
  bool defined() const { return blocks.defined(); }
};
int64_t BlockBytes(Codes codes);

// True when this CPU runs the kernel (AVX512-F, -BW and -VNNI). Elsewhere the packers return an undefined
// Packed, and callers keep LibTorch's kernels.
bool Available();

// Which kernels a quantized weight's few-row products take: kAuto, these where Available(); kLibTorch,
// LibTorch's on any CPU, so that the two can be compared, and tested, on a CPU that has VNNI.
enum class Kernels { kAuto, kLibTorch };
// True when `kernels` lets products take these kernels on this CPU.
bool Usable(Kernels kernels);
// "auto" or "libtorch"; INVALID_ARGUMENT otherwise, naming them.
absl::StatusOr<Kernels> ParseKernels(absl::string_view name);
const char* KernelsName(Kernels kernels);

// codes [out, in] integers in 0..15, scales and mins [out, in / 32] float (rounded to float16); out % 16 == 0
// and in % 32 == 0.
Packed PackQ4(const torch::Tensor& codes, const torch::Tensor& scales, const torch::Tensor& mins);
// codes [out, in] integers in -127..127, scales [out, in / 32] float (rounded to float16); the same shapes.
Packed PackInt8(const torch::Tensor& codes, const torch::Tensor& scales);

// The activations of each row quantized per group of 32 in two int8 digits, as int8_rows quantizes a row
// (x ~ (codes + low / kLowBase) * scale): codes and low int8 [n, in]; scales float32 [n, in / 32]; per group
// the sum of codes + low / kLowBase (float32) and the two digits' integer sums (int32), [n, in / 32] each.
// x [n, in] float32 or bfloat16, any strides; in % 32 == 0.
struct Activations {
  torch::Tensor codes, low, scales, sums, code_sums, low_sums;
  // One row's pointers, as the kernel reads them.
  struct Row {
    const int8_t *codes, *low;
    const float *scales, *sums;
    const int32_t *code_sums, *low_sums;
  };
};
Activations QuantizeActivations(const torch::Tensor& x);

// The integer sums of int8_rows::Product (int8 weight rows with one scale each) for a few activation rows,
// reading the weight rows as int8_rows keeps them, so no second copy is made:
//   hi[i, j] = sum_k a_codes[i, k] * b[j, k], and lo[i, j] the same with a_low (when defined).
// a_codes, a_low [n, k] int8 (rows may be strided); b [m, k] int8 contiguous, b_sums = RowSums(b); hi, lo
// [n, m] int32 (rows may be strided). vpdpbusd wants an unsigned operand: the activations are read plus 128 and
// 128 * b_sums[j] is taken off. Unlike oneDNN's GEMM (at::_int_mm) it reads each weight row once for both
// digits. Needs Available().
void Int8RowSums(const torch::Tensor& a_codes, const torch::Tensor& a_low, const torch::Tensor& b,
                 const torch::Tensor& b_sums, const torch::Tensor& hi, const torch::Tensor& lo);
// codes [m, k] int8 -> [m] int32, each row's sum.
torch::Tensor RowSums(const torch::Tensor& codes);

// x [n, in] (float32 or bfloat16) times the packed weight -> [n, out] float32. Needs Available(). Made for
// one row: each further row rereads the weight from cache.
torch::Tensor Product(const torch::Tensor& x, const Packed& w);

}  // namespace kvc::vnni_gemv

#endif  // KVC_COMPRESSOR_MODEL_VNNI_GEMV_H_
