// What kvc's CPU loops are written in: GCC's generic vector types, and KVC_CPU_CLONES, which compiles a
// function once per x86-64 instruction set (AVX-512, AVX2, baseline) and lets the loader pick the clone the
// CPU runs. The library is built for baseline x86-64, so without the clones loops over these types would be
// lowered to SSE2. Elsewhere the macro is empty and the function is built once.
//
// The clones compute the same IEEE operations lane by lane; results differ only where a file allows fused
// multiply-adds (-ffp-contract), which is set per source file. Include only from .cc files: GCC warns that
// vector arguments change the ABI across clones (-Wno-psabi there), so these types never cross a function
// boundary uninlined.
#ifndef KVC_COMPRESSOR_MODEL_CPU_VECTORS_H_
#define KVC_COMPRESSOR_MODEL_CPU_VECTORS_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#define KVC_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVC_CPU_CLONES
#endif

namespace kvc::cpu_vectors {

using Floats16 = float __attribute__((vector_size(64)));
using Floats8 = float __attribute__((vector_size(32)));
constexpr int64_t kLanes = 16;

[[gnu::always_inline]] inline Floats16 Load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[gnu::always_inline]] inline void Store16(float* p, Floats16 v) { std::memcpy(p, &v, sizeof v); }

// Rows per task of a row loop (at::parallel_for's grain): enough elements that splitting across threads pays
// for itself, so that a decode step's single row stays on the calling thread.
inline int64_t RowGrain(int64_t row_elements) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_elements));
}

}  // namespace kvc::cpu_vectors

#endif  // KVC_COMPRESSOR_MODEL_CPU_VECTORS_H_
