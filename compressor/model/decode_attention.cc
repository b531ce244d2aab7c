#include "compressor/model/decode_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "compressor/model/cpu_vectors.h"
#include "compressor/model/cpu_kernels.h"

namespace kvc {
namespace {

// Sixteen float lanes in GCC's generic vectors (cpu_vectors.h): the compiler lowers them to whatever the
// target has, and the clones below give it AVX-512 or AVX2 where the CPU runs them.
using cpu_vectors::Floats16;
using cpu_vectors::Floats8;
using cpu_vectors::kLanes;
using cpu_vectors::Load16;
using Halves16 = uint16_t __attribute__((vector_size(32)));
using Words16 = uint32_t __attribute__((vector_size(64)));
using Floats4 = float __attribute__((vector_size(16)));
// Cache slots per task: small enough that the real entries of a ragged layer spread over the threads.
constexpr int64_t kSlotsPerTask = 256;

// bfloat16 is the top half of a float32: widening is a shift, exact.
[[gnu::always_inline]] inline Floats16 Load16(const c10::BFloat16* p) {
  Halves16 h;
  std::memcpy(&h, p, sizeof h);
  const Words16 w = __builtin_convertvector(h, Words16) << 16;
  Floats16 v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

// Sum of the lanes as a tree of halves (a chain of 15 scalar adds would be the critical path of a score).
[[gnu::always_inline]] inline float Total(Floats16 v) {
  Floats8 a, b;
  std::memcpy(&a, &v, sizeof a);
  std::memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof a, sizeof b);
  a += b;
  Floats4 c, d;
  std::memcpy(&c, &a, sizeof c);
  std::memcpy(&d, reinterpret_cast<const char*>(&a) + sizeof c, sizeof d);
  c += d;
  return (c[0] + c[2]) + (c[1] + c[3]);
}

// One KV head's slice of a decode step: `q` [G, D] float32, keys or values rows of D at `rows` + j * `stride`.
template <typename T>
struct HeadSlice {
  const float* q;
  const T* rows;
  int64_t stride;
  const bool* valid;  // slot j real iff valid[j * valid_stride]; null when all are
  int64_t valid_stride;
  int64_t G, D;
  bool Real(int64_t j) const { return valid == nullptr || valid[j * valid_stride]; }
};

// scores[g * L + j] = scale * q_g . K_j for the real slots j in [begin, end), -inf for padding. kChunks is
// D / 16 when the row fits in registers (D = 64 or 128), 0 for any other D.
template <int kChunks, typename T>
[[gnu::always_inline]] inline void ScoreSlots(const HeadSlice<T>& s, int64_t begin, int64_t end, float scale,
                                              float* scores, int64_t L) {
  for (int64_t j = begin; j < end; ++j) {
    if (!s.Real(j)) {
      for (int64_t g = 0; g < s.G; ++g) scores[g * L + j] = -std::numeric_limits<float>::infinity();
      continue;
    }
    const T* k = s.rows + j * s.stride;
    if constexpr (kChunks > 0) {
      Floats16 kv[kChunks];
      for (int c = 0; c < kChunks; ++c) kv[c] = Load16(k + c * kLanes);
      for (int64_t g = 0; g < s.G; ++g) {
        const float* qg = s.q + g * s.D;
        Floats16 acc = Load16(qg) * kv[0];
        for (int c = 1; c < kChunks; ++c) acc += Load16(qg + c * kLanes) * kv[c];
        scores[g * L + j] = Total(acc) * scale;
      }
    } else {
      for (int64_t g = 0; g < s.G; ++g) {
        float dot = 0;
        for (int64_t d = 0; d < s.D; ++d) dot += s.q[g * s.D + d] * static_cast<float>(k[d]);
        scores[g * L + j] = dot * scale;
      }
    }
  }
}

// out[g * D + d] += sum over the real slots j in [begin, end) of p[g * L + j] * V_j[d]. With kChunks > 0 a
// query's sums stay in registers over a tile of rows small enough to stay in L1 for the group's next query.
template <int kChunks, typename T>
[[gnu::always_inline]] inline void MixSlots(const HeadSlice<T>& s, int64_t begin, int64_t end, const float* p,
                                            int64_t L, float* out) {
  if constexpr (kChunks > 0) {
    constexpr int64_t kTile = 64;
    for (int64_t t0 = begin; t0 < end; t0 += kTile) {
      const int64_t t1 = std::min(end, t0 + kTile);
      for (int64_t g = 0; g < s.G; ++g) {
        Floats16 acc[kChunks] = {};
        const float* pg = p + g * L;
        for (int64_t j = t0; j < t1; ++j) {
          if (!s.Real(j)) continue;
          const T* v = s.rows + j * s.stride;
          for (int c = 0; c < kChunks; ++c) acc[c] += pg[j] * Load16(v + c * kLanes);
        }
        float* og = out + g * s.D;
        for (int c = 0; c < kChunks; ++c) {
          Floats16 o = Load16(og + c * kLanes) + acc[c];
          std::memcpy(og + c * kLanes, &o, sizeof o);
        }
      }
    }
  } else {
    for (int64_t j = begin; j < end; ++j) {
      if (!s.Real(j)) continue;
      const T* v = s.rows + j * s.stride;
      for (int64_t g = 0; g < s.G; ++g) {
        for (int64_t d = 0; d < s.D; ++d) out[g * s.D + d] += p[g * L + j] * static_cast<float>(v[d]);
      }
    }
  }
}

// The row widths kept in registers are template arguments; every level is inlined into the clones below,
// so that each is compiled for its clone's instruction set.
template <typename T>
[[gnu::always_inline]] inline void ScoreAnyWidth(const HeadSlice<T>& s, int64_t b, int64_t e, float scale,
                                                 float* out, int64_t L) {
  if (s.D == 64) {
    ScoreSlots<4>(s, b, e, scale, out, L);
  } else if (s.D == 128) {
    ScoreSlots<8>(s, b, e, scale, out, L);
  } else {
    ScoreSlots<0>(s, b, e, scale, out, L);
  }
}

template <typename T>
[[gnu::always_inline]] inline void MixAnyWidth(const HeadSlice<T>& s, int64_t b, int64_t e, const float* p,
                                               int64_t L, float* out) {
  if (s.D == 64) {
    MixSlots<4>(s, b, e, p, L, out);
  } else if (s.D == 128) {
    MixSlots<8>(s, b, e, p, L, out);
  } else {
    MixSlots<0>(s, b, e, p, L, out);
  }
}

// One entry point per cache dtype, each cloned per instruction set (the loader picks one by the CPU).
KVC_CPU_CLONES void ScoreTask(const HeadSlice<float>& s, int64_t b, int64_t e, float scale, float* out, int64_t L) {
  ScoreAnyWidth(s, b, e, scale, out, L);
}
KVC_CPU_CLONES void ScoreTask(const HeadSlice<c10::BFloat16>& s, int64_t b, int64_t e, float scale, float* out,
                              int64_t L) {
  ScoreAnyWidth(s, b, e, scale, out, L);
}
KVC_CPU_CLONES void MixTask(const HeadSlice<float>& s, int64_t b, int64_t e, const float* p, int64_t L, float* out) {
  MixAnyWidth(s, b, e, p, L, out);
}
KVC_CPU_CLONES void MixTask(const HeadSlice<c10::BFloat16>& s, int64_t b, int64_t e, const float* p, int64_t L,
                            float* out) {
  MixAnyWidth(s, b, e, p, L, out);
}

// Runs f(task) for every task in [0, tasks), dealt round-robin to the intra-op threads: a head's real
// entries sit together (its kept ones, then padding up to the fullest head), so contiguous ranges would
// hand one thread most of the real work.
template <typename F>
void ForEachTask(int64_t tasks, const F& f) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tasks));
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t task = t; task < tasks; task += threads) f(task);
    }
  });
}

// Two passes over the cache, each split into (KV head, block of slots) tasks: scores of the real slots,
// one softmax over [H, L] (padding at -inf weighs 0), then each task's weighted sum of its values, added
// up per head after.
template <typename T>
torch::Tensor DecodeAttentionTyped(const torch::Tensor& q32, const torch::Tensor& K, const torch::Tensor& V,
                                   const torch::Tensor& valid, double scale) {
  const int64_t H = q32.size(0), D = q32.size(1), Hkv = K.size(0), L = K.size(1), G = H / Hkv;
  const int64_t blocks = (L + kSlotsPerTask - 1) / kSlotsPerTask;
  const float* qp = q32.data_ptr<float>();
  const bool* vp = valid.defined() ? valid.data_ptr<bool>() : nullptr;
  auto slice = [&](const torch::Tensor& t, int64_t h) {
    return HeadSlice<T>{qp + h * G * D,
                        t.data_ptr<T>() + h * t.stride(0),
                        t.stride(1),
                        vp == nullptr ? nullptr : vp + h * valid.stride(0),
                        vp == nullptr ? 0 : valid.stride(1),
                        G,
                        D};
  };
  torch::Tensor scores = torch::empty({H, L}, q32.options());
  float* sp = scores.data_ptr<float>();
  ForEachTask(Hkv * blocks, [&](int64_t task) {
    const int64_t h = task / blocks, b = task % blocks;
    ScoreTask(slice(K, h), b * kSlotsPerTask, std::min(L, (b + 1) * kSlotsPerTask), static_cast<float>(scale),
              sp + h * G * L, L);
  });
  torch::Tensor p = torch::softmax(scores, -1);
  const float* pp = p.data_ptr<float>();
  torch::Tensor partial = torch::zeros({Hkv, blocks, G * D}, q32.options());
  float* op = partial.data_ptr<float>();
  ForEachTask(Hkv * blocks, [&](int64_t task) {
    const int64_t h = task / blocks, b = task % blocks;
    MixTask(slice(V, h), b * kSlotsPerTask, std::min(L, (b + 1) * kSlotsPerTask), pp + h * G * L, L,
            op + task * G * D);
  });
  return partial.sum(1).view({H, D});
}

}  // namespace

bool CpuDecodeAttentionEligible(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                const torch::Tensor& valid) {
  for (const torch::Tensor* t : {&q, &K, &V}) {
    if (!t->defined() || !t->device().is_cpu() || !cpu_kernels::KernelType(t->scalar_type())) return false;
  }
  if (q.dim() != 2 || K.dim() != 3 || V.sizes() != K.sizes() || K.scalar_type() != V.scalar_type()) return false;
  const int64_t H = q.size(0), Hkv = K.size(0);
  if (Hkv == 0 || H % Hkv != 0 || K.size(2) != q.size(1) || K.size(1) == 0) return false;
  if (K.stride(2) != 1 || V.stride(2) != 1) return false;
  if (valid.defined() && (!valid.device().is_cpu() || valid.scalar_type() != torch::kBool ||
                          valid.sizes() != K.sizes().slice(0, 2))) {
    return false;
  }
  return true;
}

torch::Tensor CpuDecodeAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                 const torch::Tensor& valid, double scale) {
  torch::Tensor q32 = q.to(torch::kFloat32).contiguous();
  torch::Tensor out = K.scalar_type() == torch::kBFloat16
                          ? DecodeAttentionTyped<c10::BFloat16>(q32, K, V, valid, scale)
                          : DecodeAttentionTyped<float>(q32, K, V, valid, scale);
  return out.to(q.scalar_type());
}

}  // namespace kvc
