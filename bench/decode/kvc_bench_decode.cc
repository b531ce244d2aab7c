// Decode latency from a full cache vs a compressed one, side by side, for each weight format: for each
// context length, the same prompt is prefilled once in full (timed: the prefill tokens/s) and once
// compressed with Finch, then the Generator decodes the same suffix from each cache, alternating, R times.
// Prints a markdown table of median per-token latency; --json writes the rows for bench/decode/run.py.
//
//   kvc-bench-decode --data ../shared/eval/dev.jsonl --contexts 1024,4096,8000 --weights float,q4
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

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
  std::string data, model_path, contexts_arg = "4096,8000", weights_arg = "float,q4", out_path, json_path;
  double ratio = 8;
  int new_tokens = 32, repeats = 3, threads = 2;
  app.add_option("--data", data, "dev.jsonl-format file whose contexts supply the text")->required();
  app.add_option("--model", model_path, "model (default: the packaged SmolLM2)");
  app.add_option("--contexts", contexts_arg, "comma-separated context lengths in tokens");
  app.add_option("--weights", weights_arg, "comma-separated weight formats (float, q4)");
  app.add_option("--ratio", ratio, "Finch compression ratio");
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

  std::string table = absl::StrFormat(
      "| weights | context tokens | cache | kept entries | prefill tokens/s | median ms/token | min ms/token | "
      "compressed/full |\n|---|---:|---|---:|---:|---:|---:|---:|\n");
  nlohmann::json rows = nlohmann::json::array();
  for (absl::string_view w : absl::StrSplit(weights_arg, ',', absl::SkipEmpty())) {
    auto format = kvc::ParseWeightFormat(w);
    if (!format.ok()) {
      std::cerr << "kvc-bench-decode: " << format.status() << "\n";
      return 1;
    }
    kvc::ModelOptions mo;
    mo.num_threads = threads;
    mo.weights = *format;
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
      kvc::CompressionSpec full_spec{.method = "none"}, finch_spec{.method = "finch", .ratio = ratio};
      const auto t0 = std::chrono::steady_clock::now();
      auto full = (*kvc::CreateCompressionMethod(full_spec))->Compress(in);
      const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto small = (*kvc::CreateCompressionMethod(finch_spec))->Compress(in);
      if (!full.ok() || !small.ok()) {
        std::cerr << "kvc-bench-decode: " << (full.ok() ? small.status() : full.status()) << "\n";
        return 1;
      }
      std::vector<double> per_token[2];
      for (int r = 0; r < repeats; ++r) {
        for (int which = 0; which < 2; ++which) {
          kvc::GenerationRequest req;
          req.caches = {which == 0 ? &full->cache : &small->cache};
          req.suffix = suffix_ids;
          req.sampling.max_tokens = new_tokens;
          req.sampling.stop_on_eos = false;  // the same number of steps from both caches
          auto res = (*gen)->Generate(req);
          if (!res.ok()) {
            std::cerr << "kvc-bench-decode: " << res.status() << "\n";
            return 1;
          }
          per_token[which].push_back(res->timings.mean_seconds_per_token * 1e3);
        }
      }
      auto fastest = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
      const double m_full = Median(per_token[0]), m_small = Median(per_token[1]);
      const double prefill_tps = static_cast<double>(n) / prefill_s;
      table += absl::StrFormat("| %s | %d | full | %d | %.0f | %.2f | %.2f | |\n", w, n, full->cache.length(),
                               prefill_tps, m_full, fastest(per_token[0]));
      table += absl::StrFormat("| %s | %d | finch %gx | %d | | %.2f | %.2f | %.2f |\n", w, n, ratio,
                               small->cache.length(), m_small, fastest(per_token[1]), m_small / m_full);
      rows.push_back({{"weights", std::string(w)}, {"context", n}, {"cache", "full"}, {"kept", full->cache.length()},
                      {"prefill_tokens_per_s", prefill_tps}, {"ms_per_token", m_full},
                      {"runs_ms_per_token", per_token[0]}});
      rows.push_back({{"weights", std::string(w)}, {"context", n}, {"cache", absl::StrFormat("finch %gx", ratio)},
                      {"kept", small->cache.length()}, {"ms_per_token", m_small},
                      {"runs_ms_per_token", per_token[1]}});
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
