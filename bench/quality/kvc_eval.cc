// kvc-eval: the quality protocol of DESIGN §11 for kvc's own methods. For each record of a dev.jsonl file
// and each method x ratio: build the ChatML prompt (system line + "Context:\n{context}\n\nQuestion: {q}"),
// compress the context with the query, decode at most 16 tokens greedily from the compressed cache, and
// score "any answer appears in the output, case-insensitively". One JSON line per run on stdout.
// --cache-dtypes stored measures the two-stage path instead: the record's full cache is made once with no
// question and kept as f32 .kvc bytes (Precompute FULL; "precompute_s"), and each row decodes those bytes and
// compresses from them with the question (Compress with document_cache_ids; "compress_s" is that query-time
// work, loading included).
//
//   kvc-eval --data dev.jsonl --methods none,finch,snapkv,focus@span=token --ratios 2,4,8 [--max-records N]
//            [--max-context-tokens 2500] [--long-methods finch,truncate] [--option finch.chunk_tokens=2048]
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/kv/compose.h"
#include "compressor/methods/compression.h"
#include "compressor/model/default_model.h"
#include "compressor/model/greedy.h"
#include "compressor/model/model_dtype.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "compressor/tokenizer/tokenizer.h"

namespace {


double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "focus@span=token+selection=layer": method focus with those options on top of --option's, reported under
// the whole name, so that one run can hold several variants of a method (ablations).
absl::StatusOr<std::pair<std::string, std::map<std::string, std::string>>> ParseVariant(const std::string& name) {
  std::vector<std::string> parts = absl::StrSplit(name, absl::MaxSplits('@', 1));
  std::map<std::string, std::string> options;
  if (parts.size() == 2) {
    for (absl::string_view kv : absl::StrSplit(parts[1], '+')) {
      std::vector<std::string> nv = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (nv.size() != 2) return absl::InvalidArgumentError("--methods: variant option '" + std::string(kv) +
                                                            "' of " + name + " wants NAME=VALUE");
      options[nv[0]] = nv[1];
    }
  }
  return std::make_pair(parts[0], options);
}

kvc::KvcProvenance Provenance(const kvc::LlamaModel& model, int64_t tokens_in) {
  kvc::KvcProvenance prov;
  prov.model_name = model.config().name;
  prov.tokens_in = static_cast<uint64_t>(tokens_in);
  return prov;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Quality of kvc's compression methods on a dev.jsonl file (DESIGN §11)"};
  std::string data, model_path, methods_arg = "none,finch,snapkv", ratios_arg = "2,4,8,16,32";
  std::string long_methods_arg = "finch,truncate", cache_dtypes_arg = "memory", device = "cpu", dtype_arg = "auto", weights_arg = "float";
  std::vector<std::string> option_args;
  int max_records = 0, threads = 0, max_new_tokens = 16;
  bool tokenize_only = false;
  int64_t max_context_tokens = 2500;
  app.add_option("--data", data, "dev.jsonl-format file")->required();
  app.add_option("--model", model_path, "model (default: the packaged SmolLM2)");
  app.add_option("--methods", methods_arg, "comma-separated methods");
  app.add_option("--ratios", ratios_arg, "comma-separated ratios (ignored for none)");
  app.add_option("--max-records", max_records, "stop after this many records (0: all)");
  app.add_option("--max-context-tokens", max_context_tokens,
                 "records with longer contexts run only with --long-methods (the model's window is 8K)");
  app.add_option("--long-methods", long_methods_arg, "methods that run on long records");
  app.add_option("--option", option_args, "METHOD.NAME=VALUE, e.g. finch.chunk_tokens=2048");
  app.add_option("--cache-dtypes", cache_dtypes_arg,
                 "comma-separated: memory (decode from the cache as computed) and/or f32,bf16,f16,int8 (decode from "
                 "the cache after a round trip through .kvc bytes of that dtype; engine becomes \"kvc DTYPE\") "
                 "and/or stored (compress from the stored full cache: engine \"kvc stored\")");
  app.add_option("--threads", threads, "intra-op threads");
  app.add_option("--device", device, "cpu or cuda[:N]; rows computed elsewhere than the CPU say so in \"device\"");
  app.add_option("--dtype", dtype_arg, "model dtype: auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16");
  app.add_option("--weights", weights_arg, "linear weights: float, q4 or int8 (the last two CPU only; compressor/model/linear_weight.h)");
  app.add_option("--max-new-tokens", max_new_tokens, "generation budget");
  app.add_flag("--tokenize-only", tokenize_only,
               "print each record's prompt token ids (context_ids, protected_prefix, suffix_ids) and stop, so "
               "that other engines run on exactly the same ids");
  CLI11_PARSE(app, argc, argv);

  if (model_path.empty()) model_path = kvc::DefaultModelPath().value_or("");
  kvc::ModelOptions mo;
  mo.num_threads = threads;
  mo.device = device;
  auto dtype = kvc::ParseModelDtype(dtype_arg);
  if (!dtype.ok()) {
    std::cerr << "kvc-eval: " << dtype.status() << "\n";
    return 2;
  }
  mo.dtype = *dtype;
  auto weights = kvc::ParseWeightFormat(weights_arg);
  if (!weights.ok()) {
    std::cerr << "kvc-eval: " << weights.status() << "\n";
    return 2;
  }
  mo.weights = *weights;
  auto model = kvc::LlamaModel::Load(model_path, mo);
  auto tok = kvc::LoadTokenizer(model_path);
  if (!model.ok() || !tok.ok()) {
    std::cerr << "kvc-eval: cannot load " << model_path << ": " << (model.ok() ? tok.status() : model.status()) << "\n";
    return 1;
  }
  kvc::ChatFormat format = kvc::DetectChatFormat((*tok)->chat_template());
  std::vector<std::string> methods = absl::StrSplit(methods_arg, ',', absl::SkipEmpty());
  std::vector<std::string> long_methods = absl::StrSplit(long_methods_arg, ',', absl::SkipEmpty());
  std::vector<std::string> cache_dtypes = absl::StrSplit(cache_dtypes_arg, ',', absl::SkipEmpty());
  for (const std::string& d : cache_dtypes) {
    if (d == "memory" || d == "stored") continue;
    if (auto parsed = kvc::ParseKvcDtype(d, "--cache-dtypes"); !parsed.ok()) {
      std::cerr << "kvc-eval: " << parsed.status() << "\n";
      return 2;
    }
  }
  std::vector<double> ratios;
  for (absl::string_view r : absl::StrSplit(ratios_arg, ',', absl::SkipEmpty())) ratios.push_back(std::stod(std::string(r)));
  std::map<std::string, std::map<std::string, std::string>> options;
  for (const std::string& o : option_args) {
    std::vector<std::string> kv = absl::StrSplit(o, absl::MaxSplits('=', 1));
    std::vector<std::string> mk = absl::StrSplit(kv[0], absl::MaxSplits('.', 1));
    if (kv.size() != 2 || mk.size() != 2) {
      std::cerr << "kvc-eval: --option wants METHOD.NAME=VALUE, got " << o << "\n";
      return 2;
    }
    options[mk[0]][mk[1]] = kv[1];
  }
  std::vector<int64_t> stop;
  if (auto id = (*tok)->SpecialTokenId("<|im_end|>")) stop.push_back(*id);
  if (auto id = (*tok)->eos_id()) stop.push_back(*id);

  std::ifstream in(data);
  int done = 0;
  for (std::string line; std::getline(in, line);) {
    if (max_records > 0 && done >= max_records) break;
    auto rec = nlohmann::json::parse(line, nullptr, false);
    if (!rec.is_object()) continue;
    ++done;
    auto encoded = kvc::EncodeCompressionPrompt(**tok, format, kvc::kDefaultSystemPrompt, rec["context"].get<std::string>(),
                                                rec["question"].get<std::string>());
    if (!encoded.ok()) {
      std::cerr << "kvc-eval: cannot tokenize record " << rec["id"] << ": " << encoded.status() << "\n";
      return 1;
    }
    kvc::CompressionInput input;
    input.model = model->get();
    input.context = std::move(encoded->context);
    input.protected_prefix = encoded->protected_prefix;
    input.suffix = std::move(encoded->suffix);
    auto boundaries = kvc::TextBoundaries(**tok, input.context);
    if (!boundaries.ok()) {
      std::cerr << "kvc-eval: record " << rec["id"] << ": " << boundaries.status() << "\n";
      return 1;
    }
    input.boundaries = *std::move(boundaries);
    const int64_t n = static_cast<int64_t>(input.context.size());
    if (tokenize_only) {
      nlohmann::json ids = {{"id", rec["id"]}, {"family", rec["family"]}, {"chars", rec["chars"]},
                            {"answers", rec["answers"]}, {"context_ids", input.context},
                            {"protected_prefix", input.protected_prefix}, {"suffix_ids", input.suffix},
                            {"stop_ids", stop}};
      std::cout << ids.dump() << std::endl;
      continue;
    }
    // The two-stage path: the full cache as Precompute(FULL) stores it, made once per record.
    std::string stored;
    double precompute_s = 0;
    if (std::find(cache_dtypes.begin(), cache_dtypes.end(), "stored") != cache_dtypes.end()) {
      auto t0 = std::chrono::steady_clock::now();
      auto none = kvc::CreateCompressionMethod({.method = "none"});
      auto full = none.ok() ? (*none)->Compress(input) : absl::StatusOr<kvc::CompressionResult>(none.status());
      absl::StatusOr<std::string> bytes =
          full.ok() ? kvc::EncodeKvCache(full->cache, Provenance(**model, n), {kvc::KvcDtype::kF32, kvc::KvcCodec::kNone})
                    : full.status();
      if (!bytes.ok()) {
        std::cerr << "kvc-eval: record " << rec["id"] << ": the stored full cache: " << bytes.status() << "\n";
        return 1;
      }
      stored = *std::move(bytes);
      precompute_s = Seconds(t0);
    }
    for (const std::string& method : methods) {
      bool is_long = n > max_context_tokens;
      if (is_long && std::find(long_methods.begin(), long_methods.end(), method) == long_methods.end()) continue;
      std::vector<double> method_ratios = method == "none" ? std::vector<double>{1} : ratios;
      for (double ratio : method_ratios) {
        kvc::CompressionSpec spec;
        auto variant = ParseVariant(method);
        if (!variant.ok()) {
          std::cerr << "kvc-eval: " << variant.status() << "\n";
          return 2;
        }
        spec.method = variant->first;
        spec.ratio = method == "none" ? 0 : ratio;
        spec.options = options[spec.method];
        for (const auto& [name, value] : variant->second) spec.options[name] = value;
        auto m = kvc::CreateCompressionMethod(spec);
        if (!m.ok()) {
          std::cerr << "kvc-eval: " << m.status() << "\n";
          return 2;
        }
        auto t0 = std::chrono::steady_clock::now();
        auto compressed = (*m)->Compress(input);
        if ((*model)->device().is_cuda()) torch::cuda::synchronize();
        nlohmann::json out = {{"id", rec["id"]}, {"family", rec["family"]}, {"chars", rec["chars"]},
                              {"context_tokens", n}, {"method", method}, {"ratio", ratio}, {"engine", "kvc"}};
        if (!(*model)->device().is_cpu()) {
          out["device"] = (*model)->device().str();
          out["dtype"] = c10::toString((*model)->dtype());
        }
        if ((*model)->weights() != kvc::WeightFormat::kFloat) out["weights"] = kvc::WeightFormatName((*model)->weights());
        if (!compressed.ok()) {
          out["error"] = compressed.status().ToString();
          std::cout << out.dump() << std::endl;
          continue;
        }
        double compress_s = Seconds(t0);
        for (const std::string& cache_dtype : cache_dtypes) {
          nlohmann::json row = out;
          int64_t kept = compressed->stats.tokens_out, peak = compressed->stats.peak_cache_entries;
          double row_compress_s = compress_s;
          // The in-memory row decodes on the compressed cache itself when it is the only row, on a clone
          // otherwise, because decoding appends to the cache.
          kvc::KvCache cache(compressed->cache.shape());
          if (cache_dtype == "stored") {
            t0 = std::chrono::steady_clock::now();
            absl::StatusOr<kvc::DecodedKvCache> full =
                kvc::DecodeKvCache(stored, {.device = (*model)->device(), .dtype = (*model)->dtype()});
            absl::Status ok = full.status();
            if (ok.ok() && method == "none") {
              kept = peak = full->cache.length();
              cache = std::move(full->cache);
            } else if (ok.ok()) {
              kvc::CompressionInput query_time = input;
              query_time.prefilled = &full->cache;
              absl::StatusOr<kvc::CompressionResult> from_stored = (*m)->Compress(query_time);
              ok = from_stored.status();
              if (ok.ok()) {
                kept = from_stored->stats.tokens_out;
                peak = from_stored->stats.peak_cache_entries;
                cache = std::move(from_stored->cache);
              }
            }
            if ((*model)->device().is_cuda()) torch::cuda::synchronize();
            row_compress_s = Seconds(t0);
            row["engine"] = "kvc stored";
            row["precompute_s"] = precompute_s;
            if (!ok.ok()) {
              row["error"] = ok.ToString();
              std::cout << row.dump() << std::endl;
              continue;
            }
          } else if (cache_dtype != "memory") {
            auto bytes = kvc::EncodeKvCache(compressed->cache, Provenance(**model, n),
                                            {*kvc::ParseKvcDtype(cache_dtype), kvc::KvcCodec::kNone});
            absl::StatusOr<kvc::DecodedKvCache> decoded =
                bytes.ok() ? kvc::DecodeKvCache(*bytes, {.device = (*model)->device(), .dtype = (*model)->dtype()}) : bytes.status();
            if (!decoded.ok()) {
              row["error"] = decoded.status().ToString();
              std::cout << row.dump() << std::endl;
              continue;
            }
            cache = std::move(decoded->cache);
            row["engine"] = "kvc " + cache_dtype;
            row["cache_bytes"] = bytes->size();
          } else if (cache_dtypes.size() > 1) {
            auto copy = kvc::CopyCache(compressed->cache);
            if (!copy.ok()) return 3;
            cache = std::move(*copy);
          } else {
            cache = std::move(compressed->cache);
          }
          t0 = std::chrono::steady_clock::now();
          kvc::GreedyOptions go;
          go.max_new_tokens = max_new_tokens;
          go.stop_token_ids = stop;
          auto generated = kvc::GenerateGreedy(**model, input.suffix, cache, go);
          double decode_s = Seconds(t0);
          std::string text;
          if (generated.ok()) {
            std::vector<int32_t> ids(generated->begin(), generated->end());
            kvc::DecodeOptions dopt;
            dopt.skip_special = true;
            text = (*tok)->Decode(ids, dopt).value_or("");
          }
          bool correct = false;
          for (const auto& a : rec["answers"]) {
            correct |= absl::StrContains(absl::AsciiStrToLower(text), absl::AsciiStrToLower(a.get<std::string>()));
          }
          row.update({{"kept", kept}, {"peak_cache", peak}, {"compress_s", row_compress_s}, {"decode_s", decode_s},
                      {"output", text}, {"correct", correct}});
          std::cout << row.dump() << std::endl;
        }
      }
    }
  }
  return 0;
}
