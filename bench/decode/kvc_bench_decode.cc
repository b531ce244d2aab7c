// Decode latency from a full cache vs a compressed one, side by side, for each weight format: for each
// context length, the same prompt is prefilled once in full (timed: the prefill tokens/s) and compressed
// once per method (Finch by default), then the Generator decodes the same suffix from each cache,
// alternating, R times. Prints a markdown table of median per-token latency; --json writes the rows for
// bench/decode/run.py. A cache's "kept" is its real entries per head (mean over layers and heads), "slots"
// the length of its longest layer: a ragged cache (focus or recall with adaptive or global budgets) pads
// each layer to its fullest head.
//
//   kvc-bench-decode --data ../shared/eval/dev.jsonl --contexts 1024,4096,8000 --weights float,q4
//   kvc-bench-decode --data ../shared/eval/dev.jsonl --contexts 8000 --weights q4 --methods finch,recall
//   kvc-bench-decode --data ../shared/eval/dev.jsonl --contexts 1024,8000 --weights q4 --kernels auto,libtorch
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "compressor/generate/generator.h"
#include "compressor/methods/compression.h"
#include "compressor/model/default_model.h"
#include "compressor/model/linear_weight.h"
#include "compressor/tokenizer/tokenizer.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

// The first `n` tokens of the dev set's documents, one after another: real text, any length.
absl::StatusOr<std::vector<int64_t>> ContextTokens(const std::string& data, const kvc::Tokenizer& tok, int64_t n) {
  std::ifstream in(data);
  if (!in) return absl::NotFoundError("cannot open " + data);
  std::vector<int64_t> ids;
  std::string line;
  while (static_cast<int64_t>(ids.size()) < n && std::getline(in, line)) {
    auto rec = nlohmann::json::parse(line, nullptr, false);
    if (!rec.is_object()) continue;
    auto enc = tok.Encode(rec["context"].get<std::string>() + "\n\n");
    if (!enc.ok()) return enc.status();
    ids.insert(ids.end(), enc->begin(), enc->end());
  }
  if (static_cast<int64_t>(ids.size()) < n) return absl::OutOfRangeError("the data holds fewer tokens than asked");
  ids.resize(n);
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-token decode latency: full cache vs compressed cache, per weight format"};
  std::string data, model_path, contexts_arg = "4096,8000", weights_arg = "float,q4", kernels_arg = "auto",
      methods_arg = "finch", out_path, json_path;
  double ratio = 8;
  int new_tokens = 32, repeats = 3, threads = 2;
  app.add_option("--data", data, "dev.jsonl-format file whose contexts supply the text")->required();
  app.add_option("--model", model_path, "model (default: the packaged SmolLM2)");
  app.add_option("--contexts", contexts_arg, "comma-separated context lengths in tokens");
  app.add_option("--weights", weights_arg, "comma-separated weight formats (float, q4, int8)");
  app.add_option("--kernels", kernels_arg,
                 "comma-separated few-row kernels of q4 and int8 (auto: vnni_gemv's where the CPU has VNNI; "
                 "libtorch); their rows are labelled weights/kernels");
  app.add_option("--methods", methods_arg, "comma-separated compression methods for the compressed caches");
  app.add_option("--ratio", ratio, "compression ratio");
  app.add_option("--new-tokens", new_tokens, "tokens decoded per run")->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "timed runs per cache")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "intra-op threads");
  app.add_option("--out", out_path, "also write the table here");
  app.add_option("--json", json_path, "write one JSON object per row here");
  CLI11_PARSE(app, argc, argv);
  if (model_path.empty()) model_path = kvc::DefaultModelPath().value_or("");
  auto tok = kvc::LoadTokenizer(model_path);
  if (!tok.ok()) {
    std::cerr << "kvc-bench-decode: " << tok.status() << "\n";
    return 1;
  }
  auto suffix = (*tok)->Encode("\nQuestion: What is this text about? Answer in detail.\n");
  std::vector<int64_t> suffix_ids(suffix->begin(), suffix->end());
  std::vector<int64_t> lengths;
  for (absl::string_view c : absl::StrSplit(contexts_arg, ',', absl::SkipEmpty())) lengths.push_back(std::stoll(std::string(c)));
  std::vector<std::string> methods = absl::StrSplit(methods_arg, ',', absl::SkipEmpty());

  std::string table = absl::StrFormat(
      "| weights | context tokens | cache | kept per head | slots | prefill tokens/s | median ms/token | min ms/token | "
      "compressed/full |\n|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json rows = nlohmann::json::array();
  // (weights, kernels) pairs; float weights have no quantized kernels, so they run once.
  std::vector<std::pair<kvc::WeightFormat, kvc::vnni_gemv::Kernels>> variants;
  for (absl::string_view w : absl::StrSplit(weights_arg, ',', absl::SkipEmpty())) {
    auto format = kvc::ParseWeightFormat(w);
    if (!format.ok()) {
      std::cerr << "kvc-bench-decode: " << format.status() << "\n";
      return 1;
    }
    for (absl::string_view k : absl::StrSplit(kernels_arg, ',', absl::SkipEmpty())) {
      auto kernels = kvc::vnni_gemv::ParseKernels(k);
      if (!kernels.ok()) {
        std::cerr << "kvc-bench-decode: " << kernels.status() << "\n";
        return 1;
      }
      if (*format == kvc::WeightFormat::kFloat && !variants.empty() && variants.back().first == *format) continue;
      variants.emplace_back(*format, *kernels);
    }
  }
  for (const auto& [format, kernels] : variants) {
    // The weights' name, and the kernels' when they are not the default.
    const std::string w = kernels == kvc::vnni_gemv::Kernels::kAuto || format == kvc::WeightFormat::kFloat
                              ? kvc::WeightFormatName(format)
                              : absl::StrCat(kvc::WeightFormatName(format), "/", kvc::vnni_gemv::KernelsName(kernels));
    kvc::ModelOptions mo;
    mo.num_threads = threads;
    mo.weights = format;
    mo.kernels = kernels;
    auto model = kvc::LlamaModel::Load(model_path, mo);
    if (!model.ok()) {
      std::cerr << "kvc-bench-decode: " << model.status() << "\n";
      return 1;
    }
    auto gen = kvc::Generator::Create(model->get(), tok->get());
    if (!gen.ok()) return 1;
    for (int64_t n : lengths) {
      auto context = ContextTokens(data, **tok, n);
      if (!context.ok()) {
        std::cerr << "kvc-bench-decode: " << context.status() << "\n";
        return 1;
      }
      kvc::CompressionInput in;
      in.model = model->get();
      in.context = *context;
      in.suffix = suffix_ids;
      // caches[0] is the full cache, then one per method.
      std::vector<std::string> labels = {"full"};
      std::vector<kvc::CompressionResult> caches;
      double prefill_s = 0;
      for (size_t i = 0; i <= methods.size(); ++i) {
        kvc::CompressionSpec spec{.method = i == 0 ? "none" : methods[i - 1], .ratio = i == 0 ? 1.0 : ratio};
        auto method = kvc::CreateCompressionMethod(spec);
        if (!method.ok()) {
          std::cerr << "kvc-bench-decode: " << method.status() << "\n";
          return 1;
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto result = (*method)->Compress(in);
        if (i == 0) prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!result.ok()) {
          std::cerr << "kvc-bench-decode: " << spec.method << ": " << result.status() << "\n";
          return 1;
        }
        caches.push_back(*std::move(result));
        if (i > 0) labels.push_back(absl::StrFormat("%s %gx", spec.method, ratio));
      }
      std::vector<std::vector<double>> per_token(caches.size());
      for (int r = 0; r < repeats; ++r) {
        for (size_t which = 0; which < caches.size(); ++which) {
          kvc::GenerationRequest req;
          req.caches = {&caches[which].cache};
          req.suffix = suffix_ids;
          req.sampling.max_tokens = new_tokens;
          req.sampling.stop_on_eos = false;  // the same number of steps from every cache
          auto res = (*gen)->Generate(req);
          if (!res.ok()) {
            std::cerr << "kvc-bench-decode: " << res.status() << "\n";
            return 1;
          }
          per_token[which].push_back(res->timings.mean_seconds_per_token * 1e3);
        }
      }
      auto fastest = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
      const double m_full = Median(per_token[0]);
      const double prefill_tps = static_cast<double>(n) / prefill_s;
      for (size_t which = 0; which < caches.size(); ++which) {
        const kvc::KvCache& c = caches[which].cache;
        const double kept = static_cast<double>(c.Entries()) / static_cast<double>(c.num_layers() * c.shape().kv_heads);
        const double m = Median(per_token[which]);
        table += absl::StrFormat("| %s | %d | %s | %.0f | %d | %s | %.2f | %.2f | %s |\n", w, n, labels[which], kept,
                                 c.length(), which == 0 ? absl::StrFormat("%.0f", prefill_tps) : "", m,
                                 fastest(per_token[which]), which == 0 ? "" : absl::StrFormat("%.2f", m / m_full));
        nlohmann::json row = {{"weights", w}, {"context", n},     {"cache", labels[which]},
                              {"kept", kept},              {"slots", c.length()}, {"ms_per_token", m},
                              {"runs_ms_per_token", per_token[which]}};
        if (which == 0) row["prefill_tokens_per_s"] = prefill_tps;
        rows.push_back(std::move(row));
      }
      std::cerr << "kvc-bench-decode: " << w << " " << n << " tokens done\n";
    }
  }
  std::cout << table;
  if (!out_path.empty()) std::ofstream(out_path) << table;
  if (!json_path.empty()) {
    std::ofstream js(json_path);
    for (const auto& r : rows) js << r.dump() << "\n";
  }
  return 0;
}
