#include "compressor/model/llama_model.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compressor/model/chunk_attention.h"
#include "compressor/model/cpu_kernels.h"
#include "compressor/model/decode_attention.h"
#include "compressor/model/fingerprint.h"
#include "compressor/model/gguf_file.h"
#include "compressor/model/gguf_weights.h"
#include "compressor/model/safetensors_weights.h"
#include "compressor/util/mapped_file.h"
#include "compressor/util/status_macros.h"
#include "compressor/util/torch_status.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;

std::string ShapeString(c10::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Loads `name`, checks its shape and converts it to the model's dtype and device.
absl::StatusOr<torch::Tensor> LoadChecked(const WeightSource& w, const std::string& name,
                                          std::vector<int64_t> shape, torch::ScalarType dtype,
                                          torch::Device device) {
  KVC_ASSIGN_OR_RETURN(torch::Tensor t, w.Load(name));
  if (t.sizes() != c10::IntArrayRef(shape)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has shape ", ShapeString(t.sizes()),
                                                   ", the config implies ", ShapeString(shape)));
  }
  // Copy out of any memory map: later in-place work must never touch a read-only page.
  return t.to(device, dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

// Host ids, positions and row indices onto the model's device. A CUDA copy from pageable host memory makes
// the host wait until the GPU has run everything queued before it (LibTorch synchronizes the stream after a
// blocking copy), which would stall every Forward of a chunked prefill; staged through pinned memory (LibTorch
// caches those blocks and keeps each until its copy has run) the copy is queued like a kernel.
torch::Tensor ToDevice(const torch::Tensor& t, const torch::Device& device) {
  if (device.is_cuda() && t.is_cpu()) return t.pin_memory().to(device, /*non_blocking=*/true);
  return t.to(device);
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& spec) {
  try {
    torch::Device d(spec);
    if (d.is_cuda() && !torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat("device ", spec, " requested but no CUDA GPU is available"));
    }
    if (!d.is_cpu() && !d.is_cuda()) {
      return absl::InvalidArgumentError(absl::StrCat("device ", spec, " is not supported (use cpu or cuda)"));
    }
    return d;
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse device '", spec, "'"));
  }
}

bool IsGgufFile(const std::string& path) {
  auto f = MappedFile::Open(path);
  return f.ok() && (*f)->size() >= 4 && std::memcmp((*f)->data(), "GGUF", 4) == 0;
}

absl::StatusOr<std::string> ReadFile(const fs::path& p) {
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::Open(p.string()));
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

// Attention of one new token ([H, 1, D] queries) over a layer's cache K, V [Hkv, L, D], padding hidden by
// `valid` [Hkv, L] when defined; [1, H, 1, D].
torch::Tensor DecodeAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                              const torch::Tensor& valid) {
  const int64_t H = q.size(0), Hkv = K.size(0), D = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  torch::Tensor q2 = q.reshape({H, D});
  if (CpuDecodeAttentionEligible(q2, K, V, valid)) return CpuDecodeAttention(q2, K, V, valid, scale).view({1, H, 1, D});
  // One query row per head: SDPA's CPU path for it repeats every KV head's keys and values for the heads of
  // its group, a copy of the whole cache per step. Grouping the queries by KV head reads the cache once.
  torch::Tensor qg = q.reshape({Hkv, H / Hkv, D});
  torch::Tensor scores = torch::bmm(qg, K.transpose(1, 2)).mul_(scale);  // [Hkv, G, L]
  if (valid.defined()) scores.masked_fill_(valid.logical_not().unsqueeze(1), -std::numeric_limits<float>::infinity());
  torch::Tensor p = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::bmm(p, V).reshape({1, H, 1, D});
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path,
                                                             const ModelOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat("model path ", path, " does not exist"));
  if (!fs::is_directory(path, ec) && IsGgufFile(path)) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    std::shared_ptr<const GgufFile> gguf(std::move(file));
    KVC_ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFromGguf(*gguf));
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<GgufWeights> weights, GgufWeights::Create(gguf, config));
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, FromWeights(config, *weights, options));
    // The whole file covers architecture metadata, every weight and the embedded tokenizer.
    KVC_ASSIGN_OR_RETURN(model->fingerprint_, ComputeFingerprint(config, {path}));
    return model;
  }
  fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  if (!fs::exists(dir / "config.json", ec)) {
    if (!fs::is_directory(path, ec)) {
      // Not GGUF and no config.json: either garbage or a bare safetensors file we cannot interpret.
      auto probe = SafetensorsWeights::Open(path);
      if (!probe.ok()) return probe.status();
    }
    return absl::InvalidArgumentError(absl::StrCat("no config.json next to ", path,
                                                   "; a model is a .gguf file or a Hugging Face directory"));
  }
  KVC_ASSIGN_OR_RETURN(std::string config_text, ReadFile(dir / "config.json"));
  KVC_ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFromHfJson(config_text));
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWeights> weights, SafetensorsWeights::Open(path));
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, FromWeights(config, *weights, options));
  std::vector<std::string> files = weights->files();
  for (const char* extra : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    if (fs::exists(dir / extra, ec)) files.push_back((dir / extra).string());
  }
  KVC_ASSIGN_OR_RETURN(model->fingerprint_, ComputeFingerprint(config, files));
  return model;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::FromWeights(const ModelConfig& config,
                                                                    const WeightSource& w,
                                                                    const ModelOptions& options) {
  KVC_RETURN_IF_ERROR(config.Validate());
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel());
  model->config_ = config;
  KVC_ASSIGN_OR_RETURN(model->device_, ParseDevice(options.device));
  model->dtype_ = options.dtype.value_or(model->device_.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
  // LibTorch's CPU half-precision matmuls are much slower than float32 and miss kernels; bfloat16 has
  // native CPU support (AVX512-BF16, AMX) and is what a CUDA server computes in, so a CPU can reproduce it.
  if (model->device_.is_cpu() && model->dtype_ == torch::kFloat16) {
    return absl::InvalidArgumentError("on CPU kvc runs models in float32 or bfloat16, not float16");
  }
  if (model->dtype_ != torch::kFloat32 && model->dtype_ != torch::kBFloat16 && model->dtype_ != torch::kFloat16) {
    return absl::InvalidArgumentError("model dtype must be float32, bfloat16 or float16");
  }
  if (options.weights != WeightFormat::kFloat && !model->device_.is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat("weights=", WeightFormatName(options.weights),
                                                   " runs on CPU only; use weights=float on CUDA"));
  }
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);

  return CatchTorch([&]() -> absl::StatusOr<std::unique_ptr<LlamaModel>> {
    c10::InferenceMode guard;
    const int64_t H = config.num_heads, Hkv = config.num_kv_heads, D = config.head_dim;
    const int64_t hidden = config.hidden_size, ffn = config.intermediate_size, vocab = config.vocab_size;
    const torch::ScalarType dt = model->dtype_;
    const torch::Device dev = model->device_;
    std::optional<torch::Tensor> freq_factors;
    if (w.Has("rope_freqs.weight")) {
      KVC_ASSIGN_OR_RETURN(torch::Tensor f, w.Load("rope_freqs.weight"));
      freq_factors = f.to(torch::kFloat32);
    }
    KVC_ASSIGN_OR_RETURN(Rope rope, Rope::Create(config, freq_factors));
    model->rope_.emplace(rope.OnDevice(model->device_));

    // Under q4 and int8 the lm_head is kept as int8 rows (output_head.h), which a tied embedding reads its
    // rows from; an untied embedding (read a row at a time) stays dense in bfloat16, what the int4 kernels'
    // activations are in anyway.
    const bool quantized = options.weights != WeightFormat::kFloat;
    const torch::ScalarType table_dt = quantized ? torch::kBFloat16 : dt;
    model->weights_ = options.weights;
    KVC_ASSIGN_OR_RETURN(torch::Tensor embed,
                         LoadChecked(w, "model.embed_tokens.weight", {vocab, hidden}, table_dt, dev));
    KVC_ASSIGN_OR_RETURN(model->norm_, LoadChecked(w, "model.norm.weight", {hidden}, dt, dev));
    const bool tied = config.tie_word_embeddings || !w.Has("lm_head.weight");
    torch::Tensor head = embed;
    if (!tied) {
      KVC_ASSIGN_OR_RETURN(head, LoadChecked(w, "lm_head.weight", {vocab, hidden}, table_dt, dev));
    }
    KVC_ASSIGN_OR_RETURN(model->lm_head_,
                         OutputHead::Create(head, {.int8 = quantized, .rows = tied, .kernels = options.kernels}));
    // A tied embedding reads its rows from the lm_head (embed_ left undefined).
    if (!tied) model->embed_ = embed;
    // Fused projections are loaded in float32, joined, then put in the chosen format.
    auto linear = [&](const std::string& name, std::vector<torch::Tensor> parts,
                      torch::Tensor bias = {}) -> absl::StatusOr<LinearWeight> {
      torch::Tensor joined = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
      return LinearWeight::Create(name, joined, bias, options.weights, dt, options.kernels);
    };
    const torch::ScalarType ldt = torch::kFloat32;
    for (int64_t i = 0; i < config.num_layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      Layer l;
      KVC_ASSIGN_OR_RETURN(l.attn_norm, LoadChecked(w, p + "input_layernorm.weight", {hidden}, dt, dev));
      KVC_ASSIGN_OR_RETURN(l.ffn_norm, LoadChecked(w, p + "post_attention_layernorm.weight", {hidden}, dt, dev));
      KVC_ASSIGN_OR_RETURN(torch::Tensor q, LoadChecked(w, p + "self_attn.q_proj.weight", {H * D, hidden}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(torch::Tensor k, LoadChecked(w, p + "self_attn.k_proj.weight", {Hkv * D, hidden}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(torch::Tensor v, LoadChecked(w, p + "self_attn.v_proj.weight", {Hkv * D, hidden}, ldt, dev));
      torch::Tensor bqkv;
      if (config.attention_bias) {
        KVC_ASSIGN_OR_RETURN(torch::Tensor bq, LoadChecked(w, p + "self_attn.q_proj.bias", {H * D}, dt, dev));
        KVC_ASSIGN_OR_RETURN(torch::Tensor bk, LoadChecked(w, p + "self_attn.k_proj.bias", {Hkv * D}, dt, dev));
        KVC_ASSIGN_OR_RETURN(torch::Tensor bv, LoadChecked(w, p + "self_attn.v_proj.bias", {Hkv * D}, dt, dev));
        bqkv = torch::cat({bq, bk, bv}, 0);
      }
      KVC_ASSIGN_OR_RETURN(l.wqkv, linear(p + "self_attn.qkv_proj", {q, k, v}, bqkv));
      KVC_ASSIGN_OR_RETURN(torch::Tensor wo, LoadChecked(w, p + "self_attn.o_proj.weight", {hidden, H * D}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(l.wo, linear(p + "self_attn.o_proj", {wo}));
      KVC_ASSIGN_OR_RETURN(torch::Tensor gate, LoadChecked(w, p + "mlp.gate_proj.weight", {ffn, hidden}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(torch::Tensor up, LoadChecked(w, p + "mlp.up_proj.weight", {ffn, hidden}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(l.w_gate_up, linear(p + "mlp.gate_up_proj", {gate, up}));
      KVC_ASSIGN_OR_RETURN(torch::Tensor down, LoadChecked(w, p + "mlp.down_proj.weight", {hidden, ffn}, ldt, dev));
      KVC_ASSIGN_OR_RETURN(l.w_down, linear(p + "mlp.down_proj", {down}));
      model->layers_.push_back(std::move(l));
    }
    return std::move(model);
  });
}

int64_t LlamaModel::weight_bytes() const {
  auto size = [](const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : int64_t{0}; };
  int64_t n = size(embed_) + size(norm_) + lm_head_.bytes();
  for (const Layer& l : layers_) {
    n += size(l.attn_norm) + size(l.ffn_norm) + l.wqkv.bytes() + l.wo.bytes() + l.w_gate_up.bytes() +
         l.w_down.bytes();
  }
  return n;
}

KvCache LlamaModel::NewCache() const {
  KvCache cache(KvCacheShape{config_.num_layers, config_.num_kv_heads, config_.head_dim, dtype_, device_});
  cache.set_model_fingerprint(fingerprint_);
  return cache;
}

torch::Tensor LlamaModel::CausalMask(int64_t past, int64_t n) const {
  auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  const int64_t total = past + n;
  torch::Tensor kidx = torch::arange(total, iopt).unsqueeze(0);
  torch::Tensor qidx = (torch::arange(n, iopt) + past).unsqueeze(1);
  torch::Tensor m = kidx <= qidx;
  if (config_.sliding_window > 0 && total > config_.sliding_window) m = m & (qidx - kidx < config_.sliding_window);
  return m;
}

LlamaModel::ChunkMask LlamaModel::MaskFor(int64_t past, int64_t n) const {
  // Every cached entry precedes the chunk; inside the chunk attention is causal.
  const bool windowed = config_.sliding_window > 0 && past + n > config_.sliding_window;
  if (windowed || (past > 0 && n > 1)) return ChunkMask{CausalMask(past, n), false, !windowed};
  return ChunkMask{std::nullopt, past == 0 && n > 1, false};
}

torch::Tensor LlamaModel::RmsNorm(const torch::Tensor& x, const torch::Tensor& w,
                                  std::optional<torch::ScalarType> out) const {
  const torch::ScalarType kernel_out = out.value_or(torch::kFloat32);
  if (x.dim() == 2 && cpu_kernels::Eligible({&x, &w}) && cpu_kernels::KernelType(kernel_out)) {
    return cpu_kernels::RmsNorm(x, w, config_.rms_norm_eps, kernel_out);
  }
  // Same operation order as transformers' LlamaRMSNorm: normalize in float32, then scale.
  torch::Tensor xf = x.to(torch::kFloat32);
  torch::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  torch::Tensor y = w * (xf * torch::rsqrt(var + config_.rms_norm_eps)).to(x.scalar_type());
  return out ? y.to(*out) : y;
}

absl::StatusOr<ForwardOutput> LlamaModel::Forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                                                  KvCache& cache, const ForwardOptions& options) const {
  if (tokens.dim() != 1 || tokens.size(0) == 0) {
    return absl::InvalidArgumentError("Forward: tokens must be a non-empty 1-D tensor");
  }
  if (positions.dim() != 1 || positions.size(0) != tokens.size(0)) {
    return absl::InvalidArgumentError("Forward: positions must be 1-D and as long as tokens");
  }
  const int64_t n = tokens.size(0);
  const KvCacheShape& cs = cache.shape();
  if (cs.num_layers != config_.num_layers || cs.kv_heads != config_.num_kv_heads ||
      cs.head_dim != config_.head_dim || cs.dtype != dtype_ || cs.device != device_) {
    return absl::InvalidArgumentError("Forward: the cache was not made for this model");
  }
  torch::Tensor ids = tokens.to(torch::kCPU, torch::kInt64);
  int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: token id ", lo < 0 ? lo : hi,
                                                   " is outside the vocabulary [0, ", config_.vocab_size, ")"));
  }
  for (int64_t i : options.logits_for) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(absl::StrCat("Forward: logits_for index ", i, " is outside the chunk of ", n));
    }
  }
  if (options.capture_queries < 0 || options.capture_queries > n) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: capture_queries ", options.capture_queries,
                                                   " must be in [0, ", n, "]"));
  }
  if (options.capture_queries > 0 && !options.capture_rows.empty()) {
    return absl::InvalidArgumentError("Forward: capture_queries and capture_rows are exclusive");
  }
  for (int64_t i : options.capture_rows) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(absl::StrCat("Forward: capture_rows index ", i, " is outside the chunk of ", n));
    }
  }
  if (options.capture_hidden_after < 0 || options.capture_hidden_after > config_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: capture_hidden_after ", options.capture_hidden_after,
                                                   " must be in [0, ", config_.num_layers, "]"));
  }
  std::vector<int64_t> before(config_.num_layers);
  for (int64_t l = 0; l < config_.num_layers; ++l) before[l] = cache.length(l);
  auto result = CatchTorch([&] { return ForwardImpl(ids, positions, cache, options); });
  // Never leave a half-appended chunk behind.
  if (!result.ok()) {
    for (int64_t l = 0; l < config_.num_layers; ++l) cache.TruncateLayer(l, before[l]);
  }
  return result;
}

absl::StatusOr<ForwardOutput> LlamaModel::ForwardImpl(const torch::Tensor& tokens, const torch::Tensor& positions,
                                                      KvCache& cache, const ForwardOptions& options) const {
  c10::InferenceMode guard;
  const int64_t n = tokens.size(0);
  const int64_t H = config_.num_heads, Hkv = config_.num_kv_heads, D = config_.head_dim;
  const int64_t F = config_.intermediate_size;
  torch::Tensor tok = ToDevice(tokens, device_);
  torch::Tensor pos = ToDevice(positions.to(torch::kInt64), device_);
  auto [cos, sin] = rope_->CosSin(pos, dtype_);
  // Layers of a ragged cache differ in length; the masks of one length are built once.
  std::map<int64_t, ChunkMask> masks;

  ForwardOutput out;
  torch::Tensor rows;
  if (!options.capture_rows.empty()) rows = ToDevice(torch::tensor(options.capture_rows, torch::kInt64), device_);
  // [n, hidden]
  torch::Tensor x = embed_.defined() ? embed_.index_select(0, tok).to(dtype_) : lm_head_.Rows(tok, dtype_);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const Layer& L = layers_[l];
    // Each norm writes the dtype its product reads, and each product's output joins the float residual as
    // it comes, so no separate conversion runs around a bfloat16 product.
    torch::Tensor h = RmsNorm(x, L.attn_norm, L.wqkv.InputType(n));
    torch::Tensor qkv = L.wqkv.Apply(h);
    // The query and key heads are rotated in one pass: [H + Hkv, n, D], split after.
    torch::Tensor qk = Rope::Apply(qkv.narrow(1, 0, (H + Hkv) * D).view({n, H + Hkv, D}).transpose(0, 1), cos, sin);
    torch::Tensor q = qk.narrow(0, 0, H);    // [H, n, D]
    torch::Tensor k = qk.narrow(0, H, Hkv);  // [Hkv, n, D]
    torch::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({n, Hkv, D}).transpose(0, 1);
    const int64_t past = cache.length(l);
    auto [it, fresh] = masks.try_emplace(past);
    if (fresh) it->second = MaskFor(past, n);
    const ChunkMask& cm = it->second;
    cache.Append(l, k, v, pos);
    if (options.capture_queries > 0) {
      out.queries.push_back(q.narrow(1, n - options.capture_queries, options.capture_queries).contiguous());
    } else if (rows.defined()) {
      out.queries.push_back(q.index_select(1, rows));
    }
    // Past the last layer only the logits rows and a captured residual are read. Without them (a chunk that
    // only fills the cache, or a query that only scores it) the last layer's attention, output projection and
    // MLP would be thrown away: about 1/num_layers of the chunk's arithmetic.
    if (l + 1 == config_.num_layers && options.logits_for.empty() && options.capture_hidden_after != l + 1) break;
    torch::Tensor K = cache.Keys(l), V = cache.Values(l);  // [Hkv, past + n, D]
    torch::Tensor valid = cache.Valid(l);
    torch::Tensor attn;
    if (n == 1 && device_.is_cpu() && !cm.mask) {
      attn = DecodeAttention(q, K, V, valid);
    } else if (cm.after_cache && !valid.defined() && CpuChunkAttentionEligible(q, K, V, past)) {
      attn = CpuChunkAttention(q, K, V, past);
    } else {
      std::optional<torch::Tensor> mask = cm.mask;
      bool is_causal = cm.is_causal;
      if (valid.defined()) {
        // Padding of heads that keep fewer entries: hidden from that head's query group only.
        torch::Tensor m = valid.repeat_interleave(H / Hkv, 0).unsqueeze(1);  // [H, 1, past + n]
        mask = (mask ? m & *mask : is_causal ? m & CausalMask(past, n) : m).unsqueeze(0);
        is_causal = false;
      }
      attn = at::scaled_dot_product_attention(q.unsqueeze(0), K.unsqueeze(0), V.unsqueeze(0), mask,
                                              /*dropout_p=*/0.0, is_causal, /*scale=*/std::nullopt,
                                              /*enable_gqa=*/H != Hkv);  // [1, H, n, D]
    }
    torch::Tensor o = attn.squeeze(0).transpose(0, 1).reshape({n, H * D});
    x.add_(L.wo.Product(o));  // x is this pass's own tensor (the embedding rows are a fresh copy)
    h = RmsNorm(x, L.ffn_norm, L.w_gate_up.InputType(n));
    torch::Tensor gu = L.w_gate_up.Product(h);  // [n, 2F]
    const torch::ScalarType down_in = L.w_down.InputType(n);
    torch::Tensor act;
    if (cpu_kernels::SiluMulEligible(gu) && cpu_kernels::KernelType(down_in)) {
      act = cpu_kernels::SiluMul(gu, down_in);
    } else {
      gu = gu.to(dtype_);
      act = torch::silu(gu.narrow(1, 0, F)) * gu.narrow(1, F, F);
    }
    x.add_(L.w_down.Product(act));
    if (l + 1 == options.capture_hidden_after) out.hidden = x.clone();
  }
  if (!options.logits_for.empty()) {
    torch::Tensor idx = ToDevice(torch::tensor(options.logits_for, torch::kInt64), device_);
    torch::Tensor sel = RmsNorm(x.index_select(0, idx), norm_);
    out.logits = lm_head_.Logits(sel);
  }
  return out;
}

absl::StatusOr<torch::Tensor> LlamaModel::Prefill(const std::vector<int64_t>& tokens, KvCache& cache,
                                                  int64_t chunk_tokens) const {
  if (tokens.empty()) return absl::InvalidArgumentError("Prefill: no tokens");
  if (chunk_tokens < 1) return absl::InvalidArgumentError("Prefill: chunk_tokens must be >= 1");
  torch::Tensor all = torch::tensor(tokens, torch::kInt64);
  const int64_t n = all.size(0);
  torch::Tensor last;
  for (int64_t start = 0; start < n; start += chunk_tokens) {
    int64_t len = std::min(chunk_tokens, n - start);
    torch::Tensor pos = torch::arange(cache.next_position(), cache.next_position() + len, torch::kInt64);
    ForwardOptions fo;
    if (start + len == n) fo.logits_for = {len - 1};
    KVC_ASSIGN_OR_RETURN(ForwardOutput out, Forward(all.narrow(0, start, len), pos, cache, fo));
    cache.set_next_position(cache.next_position() + len);
    if (out.logits.defined()) last = out.logits[0];
  }
  return last;
}

}  // namespace kvc
