#include "compressor/model/vnni_gemv.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "compressor/model/int8_rows.h"

namespace kvc::vnni_gemv {
namespace {

constexpr int64_t kRunBytes = 4 * kTileRows;  // one 64-byte load: four codes of each of the tile's rows
constexpr int64_t kConstantBytes = 2 * kTileRows;  // 16 float16 values
constexpr int64_t kQ4Runs = kGroup / 8;  // each load holds two runs of four inputs, in its two nibbles
constexpr int64_t kInt8Runs = kGroup / 4;

// Blocks a thread asks for ahead of its reads: without it a thread waited on most loads of a step's weights.
constexpr int64_t kPrefetchBlocks = 4;

// Weight rows Int8RowSums reads together (each activation load serves them all).
constexpr int64_t kRowBlock = 4;
// How far ahead along a weight row Int8RowSums asks for it: without it the 30 SmolLM2 layers' products
// took 6.4 ms per step (as long as oneDNN's), with it 4.3-4.8 ms (2-8 KB ahead measured; 4-6 KB best).
constexpr int64_t kRowPrefetchBytes = 4096;
// Weight bytes per task of Int8RowSums' loop: large enough to outweigh a task's dispatch.
constexpr int64_t kRowTaskBytes = int64_t{64} << 10;

// Tiles per task of Product's loop: a tile of a 576-input product is ~9 K multiply-adds, so a projection to
// 576 outputs (36 tiles) still splits across two threads while each task outweighs its dispatch.
constexpr int64_t kTileGrain = 4;

#if defined(__x86_64__)
#define KVC_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

KVC_VNNI inline void Prefetch(const uint8_t* block, int64_t block_bytes) {
  for (int64_t line = 0; line < block_bytes; line += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(block + kPrefetchBlocks * block_bytes + line), _MM_HINT_T0);
  }
}

KVC_VNNI inline __m512i Broadcast4(const int8_t* x) {
  int32_t four;
  std::memcpy(&four, x, sizeof four);
  return _mm512_set1_epi32(four);
}

KVC_VNNI inline __m512 Halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The integer sums of a group in float32: the first digit's plus the second's / kLowBase.
KVC_VNNI inline __m512 Digits(__m512i first, __m512i second) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(second), _mm512_set1_ps(1.0f / int8_rows::kLowBase),
                         _mm512_cvtepi32_ps(first));
}

// One tile of 16 output rows against one quantized activation row: out[r] for the tile's rows. Each weight
// load serves both activation digits; a step waits on memory, not on the extra vpdpbusd.
template <Codes kCodes>
KVC_VNNI void TileRow(const uint8_t* blocks, const Activations::Row& x, int64_t groups, float* out) {
  constexpr bool kQ4 = kCodes == Codes::kQ4;
  const int64_t block_bytes = BlockBytes(kCodes);
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps(), acc_min = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* b = blocks + g * block_bytes;
    Prefetch(b, block_bytes);
    const int8_t* xg = x.codes + g * kGroup;
    const int8_t* lg = x.low + g * kGroup;
    __m512i first = _mm512_setzero_si512(), second = _mm512_setzero_si512();
    const int64_t runs = kQ4 ? kQ4Runs : kInt8Runs;
    for (int64_t p = 0; p < runs; ++p) {
      const __m512i w = _mm512_loadu_si512(b + p * kRunBytes);
      if constexpr (kQ4) {
        const __m512i lo = _mm512_and_si512(w, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble);
        first = _mm512_dpbusd_epi32(first, lo, Broadcast4(xg + 8 * p));
        second = _mm512_dpbusd_epi32(second, lo, Broadcast4(lg + 8 * p));
        first = _mm512_dpbusd_epi32(first, hi, Broadcast4(xg + 8 * p + 4));
        second = _mm512_dpbusd_epi32(second, hi, Broadcast4(lg + 8 * p + 4));
      } else {
        first = _mm512_dpbusd_epi32(first, w, Broadcast4(xg + 4 * p));
        second = _mm512_dpbusd_epi32(second, w, Broadcast4(lg + 4 * p));
      }
    }
    const uint8_t* constants = b + runs * kRunBytes;
    if constexpr (!kQ4) {
      // The codes are stored plus 128: each sum exceeds the signed one by 128 * the activations' code sum.
      first = _mm512_sub_epi32(first, _mm512_set1_epi32(128 * x.code_sums[g]));
      second = _mm512_sub_epi32(second, _mm512_set1_epi32(128 * x.low_sums[g]));
    }
    const __m512 scale = _mm512_mul_ps(Halves(constants), _mm512_set1_ps(x.scales[g]));
    acc = _mm512_fmadd_ps(Digits(first, second), scale, acc);
    if constexpr (kQ4) {
      acc_min = _mm512_fmadd_ps(Halves(constants + kConstantBytes), _mm512_set1_ps(x.scales[g] * x.sums[g]), acc_min);
    }
  }
  _mm512_storeu_ps(out, _mm512_add_ps(acc, acc_min));
}

// The sum of v's 16 lanes.
KVC_VNNI inline int32_t SumLanes(__m512i v) {
  const __m256i a = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i b = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  b = _mm_add_epi32(b, _mm_shuffle_epi32(b, 0x4E));
  b = _mm_add_epi32(b, _mm_shuffle_epi32(b, 0xB1));
  return _mm_cvtsi128_si32(b);
}

// kRows weight rows of int8_rows' layout (row-major, rows k bytes apart) against activation rows taken kActs
// at a time: outs[i][r] = the integer dot product of acts[i] and row r. One weight load serves kActs rows (the
// two digits of one activation row). The activations are read plus 128 (a flipped sign bit) as vpdpbusd's
// unsigned operand, and 128 * the row's code sum is taken off.
template <int kActs, int kRows>
KVC_VNNI void RowBlock(const int8_t* w, int64_t k, const int32_t* w_sums, const int8_t* const* acts,
                       int32_t* const* outs) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[kActs][kRows];
  for (int a = 0; a < kActs; ++a) {
    for (int r = 0; r < kRows; ++r) acc[a][r] = _mm512_setzero_si512();
  }
  for (int64_t kk = 0; kk < k; kk += 64) {
    // Bytes past the row's end read as 0 from both operands.
    const __mmask64 mask = k - kk >= 64 ? ~__mmask64{0} : (__mmask64{1} << (k - kk)) - 1;
    __m512i x[kActs];
    for (int a = 0; a < kActs; ++a) x[a] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, acts[a] + kk), flip);
    for (int r = 0; r < kRows; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + r * k + kk + kRowPrefetchBytes), _MM_HINT_T0);
      const __m512i wv = _mm512_maskz_loadu_epi8(mask, w + r * k + kk);
      for (int a = 0; a < kActs; ++a) acc[a][r] = _mm512_dpbusd_epi32(acc[a][r], x[a], wv);
    }
  }
  for (int a = 0; a < kActs; ++a) {
    for (int r = 0; r < kRows; ++r) outs[a][r] = SumLanes(acc[a][r]) - 128 * w_sums[r];
  }
}

// Weight rows [begin, end) against every activation row: pairs of activation rows, then a last one alone.
KVC_VNNI void RowRange(const int8_t* w, int64_t k, const int32_t* w_sums, const std::vector<const int8_t*>& acts,
                       const std::vector<int32_t*>& outs, int64_t begin, int64_t end) {
  const int64_t n = static_cast<int64_t>(acts.size());
  for (int64_t j = begin; j < end;) {
    const bool block = end - j >= kRowBlock;
    for (int64_t i = 0; i < n;) {
      const bool pair = n - i >= 2;
      int32_t* o[2] = {outs[i] + j, pair ? outs[i + 1] + j : nullptr};
      const int8_t* const* a = acts.data() + i;
      if (block && pair) RowBlock<2, kRowBlock>(w + j * k, k, w_sums + j, a, o);
      if (block && !pair) RowBlock<1, kRowBlock>(w + j * k, k, w_sums + j, a, o);
      if (!block && pair) RowBlock<2, 1>(w + j * k, k, w_sums + j, a, o);
      if (!block && !pair) RowBlock<1, 1>(w + j * k, k, w_sums + j, a, o);
      i += pair ? 2 : 1;
    }
    j += block ? kRowBlock : 1;
  }
}
#endif

// [tiles * 16, groups] -> [tiles, groups, 32] bytes: the tile's 16 rows' constants of each group as float16.
torch::Tensor TileConstants(const torch::Tensor& t) {
  const int64_t tiles = t.size(0) / kTileRows, groups = t.size(1);
  return t.to(torch::kFloat16).reshape({tiles, kTileRows, groups}).transpose(1, 2).contiguous().view(torch::kUInt8);
}

// Where one row of activations is quantized to: [in] codes and low digits, [in / kGroup] for the rest.
struct RowOut {
  int8_t *codes, *low;
  float *scales, *sums;
  int32_t *code_sums, *low_sums;
  Activations::Row row() const { return {codes, low, scales, sums, code_sums, low_sums}; }
};

void QuantizeInto(const float* x, int64_t in, const RowOut& out) {
  for (int64_t g = 0; g < in / kGroup; ++g) {
    const int64_t k0 = g * kGroup;
    out.scales[g] = int8_rows::QuantizeValues(x + k0, kGroup, out.codes + k0, out.low + k0);
    int32_t code_sum = 0, low_sum = 0;
    for (int64_t k = k0; k < k0 + kGroup; ++k) {
      code_sum += out.codes[k];
      low_sum += out.low[k];
    }
    out.code_sums[g] = code_sum;
    out.low_sums[g] = low_sum;
    out.sums[g] = static_cast<float>(code_sum) + static_cast<float>(low_sum) * (1.0f / int8_rows::kLowBase);
  }
}

// The blocks of either format: each group's runs of codes, then its constants (`constants`, each
// [out, in / 32]) as float16.
Packed Pack(Codes kind, const torch::Tensor& codes, std::initializer_list<torch::Tensor> constants) {
  Packed p;
  if (!Available()) return p;
  TORCH_CHECK(codes.dim() == 2 && codes.size(0) % kTileRows == 0 && codes.size(1) % kGroup == 0,
              "vnni_gemv: a weight of shape ", codes.sizes(), " is not in tiles of ", kTileRows, " rows and groups of ",
              kGroup);
  c10::InferenceMode guard;
  const int64_t out = codes.size(0), in = codes.size(1), tiles = out / kTileRows, groups = in / kGroup;
  torch::Tensor runs;
  if (kind == Codes::kQ4) {
    // [tiles, 16 rows, groups, runs, 2 halves, 4] -> [tiles, groups, runs, 16 rows, 4, 2 halves]: a run's 16
    // rows side by side, the second four inputs in the high nibbles.
    torch::Tensor c =
        codes.to(torch::kInt32).reshape({tiles, kTileRows, groups, kQ4Runs, 2, 4}).permute({0, 2, 3, 1, 5, 4});
    runs = c.select(5, 0) | c.select(5, 1) * 16;
  } else {
    // [tiles, 16 rows, groups, runs, 4] -> [tiles, groups, runs, 16 rows, 4].
    runs = (codes.to(torch::kInt32) + 128).reshape({tiles, kTileRows, groups, kInt8Runs, 4}).permute({0, 2, 3, 1, 4});
  }
  std::vector<torch::Tensor> parts = {runs.reshape({tiles, groups, -1}).to(torch::kUInt8)};
  for (const torch::Tensor& t : constants) parts.push_back(TileConstants(t));
  p.codes = kind;
  p.blocks = torch::cat(parts, -1).contiguous();
  return p;
}

}  // namespace

int64_t BlockBytes(Codes codes) {
  return codes == Codes::kQ4 ? kQ4Runs * kRunBytes + 2 * kConstantBytes : kInt8Runs * kRunBytes + kConstantBytes;
}

bool Available() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

bool Usable(Kernels kernels) { return kernels == Kernels::kAuto && Available(); }

absl::StatusOr<Kernels> ParseKernels(absl::string_view name) {
  if (name == "auto") return Kernels::kAuto;
  if (name == "libtorch") return Kernels::kLibTorch;
  return absl::InvalidArgumentError(absl::StrCat("kernels '", name, "' is not one of auto, libtorch"));
}

const char* KernelsName(Kernels kernels) { return kernels == Kernels::kLibTorch ? "libtorch" : "auto"; }

Packed PackQ4(const torch::Tensor& codes, const torch::Tensor& scales, const torch::Tensor& mins) {
  return Pack(Codes::kQ4, codes, {scales, mins});
}

Packed PackInt8(const torch::Tensor& codes, const torch::Tensor& scales) {
  return Pack(Codes::kInt8, codes, {scales});
}

Activations QuantizeActivations(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) % kGroup == 0, "vnni_gemv: activations of shape ", x.sizes(),
              " are not rows in groups of ", kGroup);
  c10::InferenceMode guard;
  const torch::Tensor xf = x.to(torch::kFloat32).contiguous();
  const int64_t n = xf.size(0), in = xf.size(1), groups = in / kGroup;
  Activations a;
  a.codes = torch::empty({n, in}, torch::kInt8);
  a.low = torch::empty({n, in}, torch::kInt8);
  a.scales = torch::empty({n, groups}, torch::kFloat32);
  a.sums = torch::empty({n, groups}, torch::kFloat32);
  a.code_sums = torch::empty({n, groups}, torch::kInt32);
  a.low_sums = torch::empty({n, groups}, torch::kInt32);
  for (int64_t i = 0; i < n; ++i) {
    QuantizeInto(xf.data_ptr<float>() + i * in, in,
                 {a.codes.data_ptr<int8_t>() + i * in, a.low.data_ptr<int8_t>() + i * in,
                  a.scales.data_ptr<float>() + i * groups, a.sums.data_ptr<float>() + i * groups,
                  a.code_sums.data_ptr<int32_t>() + i * groups, a.low_sums.data_ptr<int32_t>() + i * groups});
  }
  return a;
}

torch::Tensor Product(const torch::Tensor& x, const Packed& w) {
  TORCH_CHECK(w.defined() && Available(), "vnni_gemv::Product without a packed weight on a VNNI CPU");
  c10::InferenceMode guard;
  const int64_t n = x.size(0), in = x.size(1), tiles = w.blocks.size(0), groups = w.blocks.size(1);
  TORCH_CHECK(x.dim() == 2 && groups * kGroup == in, "vnni_gemv::Product: activations of shape ", x.sizes(),
              " for a weight of ", groups * kGroup, " inputs");
  // The activations go to plain buffers: a decode step makes ~120 products, and tensors for them cost more
  // than the quantization.
  const torch::Tensor xf = x.to(torch::kFloat32).contiguous();
  std::vector<int8_t> digits(2 * n * in);
  std::vector<float> floats(2 * n * groups);
  std::vector<int32_t> ints(2 * n * groups);
  std::vector<Activations::Row> rows(n);
  for (int64_t i = 0; i < n; ++i) {
    const RowOut out{digits.data() + 2 * i * in, digits.data() + (2 * i + 1) * in,
                     floats.data() + 2 * i * groups, floats.data() + (2 * i + 1) * groups,
                     ints.data() + 2 * i * groups, ints.data() + (2 * i + 1) * groups};
    QuantizeInto(xf.data_ptr<float>() + i * in, in, out);
    rows[i] = out.row();
  }
  torch::Tensor y = torch::empty({n, tiles * kTileRows}, torch::kFloat32);
#if defined(__x86_64__)
  const int64_t tile_bytes = groups * BlockBytes(w.codes);
  const uint8_t* blocks = w.blocks.data_ptr<uint8_t>();
  float* out = y.data_ptr<float>();
  auto* tile_row = w.codes == Codes::kQ4 ? &TileRow<Codes::kQ4> : &TileRow<Codes::kInt8>;
  at::parallel_for(0, tiles, kTileGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t i = 0; i < n; ++i) {
        tile_row(blocks + t * tile_bytes, rows[i], groups, out + i * tiles * kTileRows + t * kTileRows);
      }
    }
  });
#endif
  return y;
}

torch::Tensor RowSums(const torch::Tensor& codes) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == torch::kInt8, "vnni_gemv::RowSums: codes must be 2-D int8");
  c10::InferenceMode guard;
  return codes.sum(1, /*keepdim=*/false, torch::kInt32).contiguous();
}

void Int8RowSums(const torch::Tensor& a_codes, const torch::Tensor& a_low, const torch::Tensor& b,
                 const torch::Tensor& b_sums, const torch::Tensor& hi, const torch::Tensor& lo) {
  TORCH_CHECK(Available(), "vnni_gemv::Int8RowSums on a CPU without AVX512-VNNI");
  const int64_t n = a_codes.size(0), k = a_codes.size(1), m = b.size(0);
  TORCH_CHECK(b.dim() == 2 && b.size(1) == k && b.is_contiguous() && b.scalar_type() == torch::kInt8 &&
                  b_sums.numel() == m && b_sums.scalar_type() == torch::kInt32 && b_sums.is_contiguous(),
              "vnni_gemv::Int8RowSums: weight rows of shape ", b.sizes(), " for activations of ", k, " inputs");
  const std::initializer_list<std::pair<const torch::Tensor*, const torch::Tensor*>> digits = {{&a_codes, &hi},
                                                                                                {&a_low, &lo}};
  for (const auto& [a, o] : digits) {
    if (!a->defined()) continue;
    TORCH_CHECK(a->scalar_type() == torch::kInt8 && a->size(0) == n && a->size(1) == k && a->stride(1) == 1 &&
                    o->scalar_type() == torch::kInt32 && o->size(0) == n && o->size(1) == m && o->stride(1) == 1,
                "vnni_gemv::Int8RowSums: activations or sums of the wrong type or shape");
  }
  std::vector<const int8_t*> acts;
  std::vector<int32_t*> outs;
  // Each activation row's digits side by side, so that one weight load serves both.
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& [a, o] : digits) {
      if (!a->defined()) continue;
      acts.push_back(a->data_ptr<int8_t>() + i * a->stride(0));
      outs.push_back(o->data_ptr<int32_t>() + i * o->stride(0));
    }
  }
#if defined(__x86_64__)
  const int8_t* w = b.data_ptr<int8_t>();
  const int32_t* w_sums = b_sums.data_ptr<int32_t>();
  const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
  const int64_t grain = std::max<int64_t>(1, kRowTaskBytes / (kRowBlock * k));
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    RowRange(w, k, w_sums, acts, outs, begin * kRowBlock, std::min(end * kRowBlock, m));
  });
#endif
}

}  // namespace kvc::vnni_gemv
