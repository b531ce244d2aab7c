#include "client/cpp/cli/request_flags.h"

#include "client/cpp/cli/document_input.h"
#include "compressor/util/status_macros.h"

namespace kvc::cli {
namespace {

const CLI::Validator kNameValue(
    [](std::string& value) -> std::string {
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) return "expected NAME=VALUE, got '" + value + "'";
      return "";
    },
    "NAME=VALUE", "NAME=VALUE");

}  // namespace

void SpecFlags::Register(CLI::App* app, const std::string& method_help) {
  app->add_option("--method", method, method_help)->type_name("NAME");
  ratio_option = app->add_option("--ratio", ratio,
                                 "Budget as original/kept context tokens, >= 1 (8 keeps one token in eight)")
                     ->type_name("X");
  target_option = app->add_option("--target-tokens", target_tokens, "Budget as context tokens to keep")
                      ->type_name("N");
  ratio_option->excludes(target_option);
  app->add_option("--option", options,
                  "Method option, repeatable (e.g. --option chunk_tokens=512 --option granularity=layer); "
                  "`kvc model` lists each method's options")
      ->type_name("NAME=VALUE")
      ->check(Quiet(kNameValue));
  app->add_option("--dtype", dtype, "Element type of the stored K and V (server default: f32)")
      ->type_name("f32|bf16|f16|int8")
      ->check(Quiet(CLI::IsMember({"f32", "bf16", "f16", "int8"})));
  app->add_option("--codec", codec, "Codec of the stored cache (server default: none)")
      ->type_name("none|zstd")
      ->check(Quiet(CLI::IsMember({"none", "zstd"})));
  system_prompt_option =
      app->add_option("--system-prompt", system_prompt,
                      "System prompt of the protected prefix; \"\" for none (server default: \"Answer the "
                      "question using only the context. Reply with the answer only.\")")
          ->type_name("TEXT");
  app->add_option("--model", model, "Fail unless the server runs this model (name or fingerprint)")
      ->type_name("NAME");
}

kvc::v1::CompressionSpec SpecFlags::Spec() const {
  kvc::v1::CompressionSpec spec;
  spec.set_method(method);
  if (ratio_option->count() > 0) spec.set_ratio(ratio);
  if (target_option->count() > 0) spec.set_target_tokens(target_tokens);
  for (const std::string& option : options) {
    const size_t eq = option.find('=');
    (*spec.mutable_options())[option.substr(0, eq)] = option.substr(eq + 1);
  }
  return spec;
}

kvc::v1::CacheDtype SpecFlags::Dtype() const {
  if (dtype == "f32") return kvc::v1::CACHE_DTYPE_F32;
  if (dtype == "bf16") return kvc::v1::CACHE_DTYPE_BF16;
  if (dtype == "f16") return kvc::v1::CACHE_DTYPE_F16;
  if (dtype == "int8") return kvc::v1::CACHE_DTYPE_INT8;
  return kvc::v1::CACHE_DTYPE_UNSPECIFIED;
}

kvc::v1::CacheCodec SpecFlags::Codec() const {
  if (codec == "none") return kvc::v1::CACHE_CODEC_NONE;
  if (codec == "zstd") return kvc::v1::CACHE_CODEC_ZSTD;
  return kvc::v1::CACHE_CODEC_UNSPECIFIED;
}

void SamplingFlags::Register(CLI::App* app) {
  app->add_option("--temperature", temperature, "0 (default): greedy; > 0: sample at this temperature")
      ->type_name("T");
  app->add_option("--top-k", top_k, "Sampling: keep the k most likely tokens (0: all)")->type_name("K");
  top_p_option = app->add_option("--top-p", top_p, "Sampling: nucleus probability in (0, 1] (default 1)")
                     ->type_name("P");
  app->add_option("--seed", seed, "Sampling seed (default 0); the same seed gives the same tokens")
      ->type_name("N");
  max_tokens_option =
      app->add_option("--max-tokens", max_tokens, "Most tokens to generate (server default: 256)")->type_name("N");
  app->add_option("--stop", stop, "Stop when the text contains this string, repeatable; it is not printed")
      ->type_name("TEXT");
  app->add_flag("--ignore-eos", ignore_eos, "Keep generating past end-of-sequence tokens");
}

kvc::v1::SamplingParams SamplingFlags::Params() const {
  kvc::v1::SamplingParams params;
  params.set_temperature(temperature);
  params.set_top_k(top_k);
  if (top_p_option->count() > 0) params.set_top_p(top_p);
  params.set_seed(seed);
  if (max_tokens_option->count() > 0) params.set_max_tokens(max_tokens);
  for (const std::string& s : stop) params.add_stop(s);
  if (ignore_eos) params.set_stop_on_eos(false);
  return params;
}

void CompressFlags::Register(CLI::App* app, bool query_required) {
  app->add_option("documents", files,
                  "Text files, one document each, compressed in order as one context; \"-\" or none: stdin")
      ->type_name("FILE")
      ->check(Quiet(CLI::ExistingFile | CLI::IsMember({"-"})));
  app->add_option("--document-cache-id", document_cache_ids,
                  "Instead of documents: a full-KV cache made by `kvc precompute --mode full`, repeatable, in "
                  "document order; the query selects from the stored KV without a second prefill")
      ->type_name("ID");
  query_option = app->add_option("-q,--query", query,
                                 query_required ? "The question (required)"
                                                : "The question; needed by query-aware methods (focus, finch, "
                                                  "snapkv with window=query)")
                     ->type_name("TEXT");
  if (query_required) query_option->required();
  spec.Register(app,
                "Compression method: focus (default), finch, snapkv, novelty, recall, streaming_llm, knorm, random, "
                "truncate, none");
}

absl::StatusOr<kvc::v1::CompressRequest> CompressFlags::Request(std::istream& stdin_stream) const {
  kvc::v1::CompressRequest request;
  if (!document_cache_ids.empty()) {
    if (!files.empty()) {
      return absl::InvalidArgumentError("give documents either as files or as --document-cache-id, not both");
    }
    for (const std::string& id : document_cache_ids) request.add_document_cache_ids(id);
  } else {
    KVC_ASSIGN_OR_RETURN(std::vector<kvc::v1::Document> documents, ReadTextDocuments(files, stdin_stream));
    for (kvc::v1::Document& document : documents) *request.add_documents() = std::move(document);
  }
  if (query_option->count() > 0) request.set_query(query);
  if (spec.has_system_prompt()) request.set_system_prompt(spec.system_prompt);
  *request.mutable_spec() = spec.Spec();
  if (!spec.model.empty()) request.set_model(spec.model);
  request.set_cache_dtype(spec.Dtype());
  request.set_cache_codec(spec.Codec());
  return request;
}

}  // namespace kvc::cli
