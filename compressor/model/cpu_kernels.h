// Fused CPU loops for the small elementwise steps of a layer (RMS norm, rotary embedding, SiLU gate).
//
// Why: a one-token decode step on CPU is bound by the number of LibTorch operations, not by arithmetic
// (each operation costs microseconds of dispatch and allocation; a layer's norms, rotary and gate alone
// were ~30 of them). Each function here is one pass over the data and one allocation (SiluMul's float32
// case excepted, below). They compute the same IEEE operations in the same order as the composed tensor
// operations, except where noted, and accept only float32 CPU tensors: callers check Eligible and otherwise
// use the composed operations. The loops run AVX-512 or AVX2 where the CPU has it (cpu_vectors.h), so that a
// prefill's thousands of rows are not read one float at a time.
//
// Thread safety: pure functions; rows are split across LibTorch's intra-op threads when there are many.
#ifndef KVC_COMPRESSOR_MODEL_CPU_KERNELS_H_
#define KVC_COMPRESSOR_MODEL_CPU_KERNELS_H_

#include <torch/types.h>

namespace kvc::cpu_kernels {

// True when every tensor is a defined float32 CPU tensor.
bool Eligible(std::initializer_list<const torch::Tensor*> tensors);

// x [n, d] (any strides), w [d] -> w * (x * rsqrt(mean(x^2) + eps)) [n, d] contiguous, in `out` (float32, or
// bfloat16 rounded to nearest even as LibTorch's conversion rounds: what a following bfloat16 product
// reads, without a separate conversion). The mean is summed in double, so it may differ from LibTorch's
// float32 reduction in the last bit.
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps,
                      torch::ScalarType out = torch::kFloat32);

// x [a, n, D] (any strides), cos and sin [n, D] contiguous -> x * cos + rotate_half(x) * sin [a, n, D]
// contiguous, bit for bit the composed result.
torch::Tensor Rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// gate_up [n, 2F] (gate then up, rows contiguous; float32, or bfloat16 read as float32) -> silu(gate) * up
// [n, F] contiguous, computed in float32 and written in `out` (float32 or bfloat16). float32 to float32 runs
// LibTorch's vectorized SiLU and product (a prefill's case), the others one loop with the scalar exp (a
// decode step's few rows); the two exps may differ in the last bit.
torch::Tensor SiluMul(const torch::Tensor& gate_up, torch::ScalarType out = torch::kFloat32);

// True for the dtypes the kernels read and write besides float32 inputs: float32 and bfloat16.
bool KernelType(torch::ScalarType type);

// True when SiluMul accepts `gate_up`: a CPU tensor of a KernelType with contiguous rows.
bool SiluMulEligible(const torch::Tensor& gate_up);

}  // namespace kvc::cpu_kernels

#endif  // KVC_COMPRESSOR_MODEL_CPU_KERNELS_H_
