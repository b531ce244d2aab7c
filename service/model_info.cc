#include "service/model_info.h"

#include <algorithm>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_header.h"
#include "compressor/methods/compression.h"

namespace kvc {
namespace {

kvc::v1::MethodOption Option(const std::string& name, const std::string& default_value,
                             const std::string& description) {
  kvc::v1::MethodOption o;
  o.set_name(name);
  o.set_default_value(default_value);
  o.set_description(description);
  return o;
}

kvc::v1::MethodOption ChunkTokens(const std::string& default_value) {
  return Option("chunk_tokens", default_value,
                "Context tokens per prefill chunk, an integer from 1 to 1048576; cancellation and deadlines are "
                "checked between chunks. Not used when compressing from document_cache_ids.");
}

kvc::v1::MethodInfo Method(const std::string& name, bool query_aware, std::vector<kvc::v1::MethodOption> options) {
  kvc::v1::MethodInfo m;
  m.set_name(name);
  m.set_query_aware(query_aware);
  for (kvc::v1::MethodOption& o : options) *m.add_options() = std::move(o);
  return m;
}

const char* ShortDtype(const std::string& dtype) {
  if (dtype == "bfloat16") return "bf16";
  if (dtype == "float16") return "f16";
  return "f32";
}

// Options focus, novelty and recall share: how token scores become kept spans.
kvc::v1::MethodOption SpanOption(const std::string& fallback = "sentence") {
  return Option("span", fallback,
                "Unit of selection: token, word (a number or name is kept whole), sentence (the text's sentences "
                "and lines, cut into pieces of at most span_tokens) or fixed (runs of span_tokens).");
}
kvc::v1::MethodOption SpanTokensOption() {
  return Option("span_tokens", "32", "Longest sentence piece, or the length of fixed spans; 1 to 65536.");
}
kvc::v1::MethodOption SpanPoolOption() {
  return Option("span_pool", "max", "A span's score from its tokens' scores: max or mean.");
}
kvc::v1::MethodOption PoolKernelOption() {
  return Option("pool_kernel", "0", "Max-pool the token scores over this many neighbours first (odd; 0: off).");
}
kvc::v1::MethodOption SinksOption() {
  return Option("sinks", "4", "First context tokens always kept (attention sinks), 0 to 65536.");
}
kvc::v1::MethodOption RerotateOption(const std::string& fallback = "true") {
  return Option("rerotate", fallback, "Re-rotate kept keys to contiguous positions (true/false).");
}
kvc::v1::MethodOption HeadBudgetOption(const std::string& fallback) {
  return Option("head_budget", fallback,
                "uniform: k entries per head; adaptive: the heads of a layer share theirs (AdaKV); global: the heads "
                "of every layer share one budget (KVzip). adaptive and global need selection=kv_head.");
}
kvc::v1::MethodOption HeadFloorOption() {
  return Option("head_floor", "20", "Percent of the mean per-head budget every head keeps (adaptive, global).");
}
kvc::v1::MethodOption HeadCapOption() {
  return Option("head_cap", "0",
                "Percent of the mean per-head budget no head exceeds (adaptive, global), 100 or more; 0: no cap. "
                "A layer in memory is as long as its fullest head, so this bounds a ragged cache's memory.");
}
kvc::v1::MethodOption PrefixInBudgetOption() {
  return Option("prefix_in_budget", "false",
                "Count the protected prefix in a ratio's budget (C / ratio kept, as other methods); by default the "
                "ratio applies to the documents and the prefix is kept on top (true/false).");
}

}  // namespace

std::vector<kvc::v1::MethodInfo> MethodCatalog(int64_t prefill_chunk) {
  const std::string chunk = std::to_string(prefill_chunk);
  std::vector<kvc::v1::MethodInfo> methods = {
      Method("finch", true,
             {Option("chunk_tokens", "2048",
                     "Context tokens per chunk of the query-guided prefill, an integer from 1 to 16777216 and at "
                     "most the model window; memory is bounded by budget + chunk + query. Cancellation and "
                     "deadlines are checked between chunks. Not used when compressing from document_cache_ids "
                     "(the composed context is one chunk)."),
              Option("granularity", "kv_head",
                     "kv_head: one set of kept tokens per KV head, scored by the mean over its group of query "
                     "heads; layer: one set per layer, scores summed over heads (the original Finch)."),
              Option("normalize", "true",
                     "Scale each query row's attention by the number of keys it sees, as Finch and kvpress do "
                     "(true/false)."),
              Option("rerotate", "true",
                     "Re-rotate kept keys to contiguous positions after each selection, so the next chunk and "
                     "the decoding continue right after them (true/false)."),
              Option("keep_query", "false",
                     "Keep the query's own KV in the cache, counted in the budget (kvpress FinchPress parity; "
                     "true/false).")}),
      Method("focus", true,
             {Option("chunk_tokens", "2048",
                     "Context tokens per chunk of the query-guided prefill, as for finch (1 to 16777216, at most "
                     "the model window)."),
              Option("score", "contrast",
                     "contrast: the query's attention to a key divided by the attention the document's own rows "
                     "give it (relevance, not attention mass), each head's scores summing to 1; attention: "
                     "finch's vote."),
              Option("doc_rows", "128", "Document rows per chunk sampled for the contrast, 1 to 65536."),
              SpanOption(), SpanTokensOption(), SpanPoolOption(), PoolKernelOption(),
              Option("selection", "shared",
                     "shared: the same tokens in every layer and head; layer: one set per layer; kv_head: one set "
                     "per KV head and layer."),
              SinksOption(),
              Option("head_weight", "uniform", "uniform, or peak: weigh each head by its largest score."),
              Option("normalize", "false", "Finch's row scaling of the query attention (true/false)."),
              HeadBudgetOption("uniform"),
              HeadFloorOption(), HeadCapOption(),
              Option("layer_budget", "uniform",
                     "uniform, or pyramid: budgets falling linearly over the layers (PyramidKV), the same mean."),
              Option("pyramid_last", "50", "Under layer_budget=pyramid, the last layer's percent of the mean, 1 to 100."),
              RerotateOption(), PrefixInBudgetOption()}),
      Method("knorm", false, {ChunkTokens(chunk)}),
      Method("none", false, {ChunkTokens(chunk)}),
      Method("random", false,
             {ChunkTokens(chunk),
              Option("seed", "0", "Seed of the uniform choice, an integer from 0 to 2^62; the same seed keeps the "
                                  "same entries.")}),
      Method("recall", false,
             {Option("chunk_tokens", "2048",
                     "Context tokens per chunk of the prefill, each replayed and scored as it is read (1 to "
                     "16777216, at most the model window); memory is bounded by budget + twice the chunk."),
              SpanOption("token"), SpanTokensOption(), SpanPoolOption(), PoolKernelOption(),
              Option("selection", "kv_head",
                     "kv_head: one set per KV head and layer; layer: one set per layer; shared: the same tokens in "
                     "every layer and head."),
              HeadBudgetOption("global"),
              HeadFloorOption(), HeadCapOption(), SinksOption(), RerotateOption("false"), PrefixInBudgetOption()}),
      Method("snapkv", false,
             {ChunkTokens(chunk),
              Option("window", "64",
                     "Observation window: the last N prefilled tokens (an integer from 1 to 1048576; with a query "
                     "the query is prefilled last and falls inside it), or \"query\" for exactly the query, which "
                     "makes the method query-aware."),
              Option("kernel", "5", "Width of the pooling over the window's votes, an odd integer from 1 to 1025."),
              Option("pooling", "avg", "Pooling of the votes: avg or max."),
              Option("rows", "mean", "How the window rows' attention is aggregated: mean or sum.")}),
      Method("streaming_llm", false,
             {ChunkTokens(chunk),
              Option("n_sink", "4",
                     "Attention sinks: leading tokens always kept besides the most recent ones, an integer from 0 "
                     "to 1048576.")}),
      Method("novelty", false,
             {Option("chunk_tokens", "2048",
                     "Context tokens per chunk of the prefill, each scored as it is read (1 to 16777216, at most "
                     "the model window); memory is bounded by budget + chunk."),
              Option("score", "span",
                     "span: the distance of a span's mean direction from the reference; token: each token's own "
                     "distance, pooled over its span by span_pool."),
              Option("window", "0",
                     "Reference of the distance: 0 for the chunk's mean direction, N for the mean of the N tokens "
                     "around each token (0 to 16777216)."),
              SpanOption(), SpanTokensOption(), SpanPoolOption(), PoolKernelOption(), SinksOption(),
              RerotateOption(), PrefixInBudgetOption()}),
      Method("truncate", false, {ChunkTokens(chunk)}),
  };
  std::sort(methods.begin(), methods.end(),
            [](const kvc::v1::MethodInfo& a, const kvc::v1::MethodInfo& b) { return a.name() < b.name(); });
  return methods;
}

kvc::v1::ModelInfo BuildModelInfo(const ModelRuntime& runtime, const CompressorLimits& limits) {
  const ModelConfig& c = runtime.model().config();
  kvc::v1::ModelInfo info;
  info.set_name(runtime.name());
  info.set_fingerprint(runtime.fingerprint());
  info.set_architecture(c.architecture);
  info.set_num_layers(static_cast<int32_t>(c.num_layers));
  info.set_num_heads(static_cast<int32_t>(c.num_heads));
  info.set_num_kv_heads(static_cast<int32_t>(c.num_kv_heads));
  info.set_head_dim(static_cast<int32_t>(c.head_dim));
  info.set_vocab_size(static_cast<int32_t>(c.vocab_size));
  info.set_max_position_embeddings(c.max_position_embeddings);
  info.set_device(runtime.device());
  info.set_dtype(ShortDtype(runtime.dtype()));
  info.set_chat_format(ChatFormatName(runtime.chat_format()));
  const std::optional<int32_t> bos = runtime.tokenizer().bos_id();
  info.set_bos_token_id(c.bos_token_id >= 0 ? static_cast<int32_t>(c.bos_token_id) : bos.value_or(-1));
  // Generation stops at the tokenizer's EOS and at the config's (they differ for chat models).
  std::set<int32_t> eos;
  for (int64_t id : c.eos_token_ids) eos.insert(static_cast<int32_t>(id));
  if (std::optional<int32_t> e = runtime.tokenizer().eos_id()) eos.insert(*e);
  for (int32_t id : eos) info.add_eos_token_ids(id);
  for (kvc::v1::MethodInfo& m : MethodCatalog(AutoPrefillChunk(runtime.model()))) *info.add_methods() = std::move(m);
  kvc::v1::ServerLimits* l = info.mutable_limits();
  l->set_max_context_tokens(limits.max_context_tokens);
  l->set_max_query_tokens(limits.max_query_tokens);
  l->set_max_documents(limits.max_documents);
  l->set_max_message_bytes(limits.max_message_bytes);
  l->set_max_queue_tokens(limits.max_queue_tokens);
  info.set_format_version(absl::StrCat(kKvcVersionMajor, ".", kKvcVersionMinor));
  return info;
}

}  // namespace kvc
