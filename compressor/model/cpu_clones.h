// KVC_CPU_CLONES: compile a function once per x86-64 instruction set (AVX-512, AVX2, baseline); the loader
// picks the clone the CPU runs. The library is built for baseline x86-64, so without it loops over GCC's
// vector types would be lowered to SSE2. Elsewhere it is empty and the function is built once.
//
// The clones compute the same IEEE operations lane by lane; results differ only where a file allows fused
// multiply-adds (-ffp-contract), which is set per source file.
#ifndef KVC_COMPRESSOR_MODEL_CPU_CLONES_H_
#define KVC_COMPRESSOR_MODEL_CPU_CLONES_H_

#if defined(__x86_64__)
#define KVC_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVC_CPU_CLONES
#endif

#endif  // KVC_COMPRESSOR_MODEL_CPU_CLONES_H_
