// Writes .kvc files compressed by the engine and the generator's greedy tokens for them, for the Python
// client's parity test (client/python/tests/test_parity.py).
//
//   kvc_cache_fixture --out DIR --method finch --ratio 2 [--document TEXT] [--question TEXT] [--max-tokens 24]
//
// Writes DIR/<method>_f32.kvc and DIR/<method>_int8.kvc (codec none), and DIR/<method>.json:
//   {"method", "ratio", "suffix": [ids], "next_position", "cache_length",
//    "tokens_f32": [greedy tokens from the compressed cache],
//    "tokens_int8": [greedy tokens from the int8 file decoded back to float32]}
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compressor/format/kv_cache_adapter.h"
#include "compressor/generate/generator.h"
#include "compressor/methods/compression.h"
#include "compressor/model/default_model.h"
#include "compressor/model/llama_model.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/tokenizer.h"

namespace {

constexpr char kDefaultDocument[] =
    "The lighthouse on Marrow Point was built in 1871 by the engineer Ada Quill. Its lamp burned whale oil "
    "until 1902, when it was converted to kerosene. The keeper's log records a storm in 1889 that lasted "
    "nine days. The tower is 34 metres tall and painted in red and white bands.";
constexpr char kDefaultQuestion[] = "Who built the lighthouse, and when?";

int Fail(const std::string& what) {
  std::cerr << "kvc_cache_fixture: " << what << "\n";
  return 1;
}

bool WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir, method = "finch", document = kDefaultDocument, question = kDefaultQuestion;
  double ratio = 2;
  int64_t max_tokens = 24;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Fail("missing value for " + arg);
    const std::string value = argv[++i];
    if (arg == "--out") {
      out_dir = value;
    } else if (arg == "--method") {
      method = value;
    } else if (arg == "--ratio") {
      ratio = std::atof(value.c_str());
    } else if (arg == "--document") {
      document = value;
    } else if (arg == "--question") {
      question = value;
    } else if (arg == "--max-tokens") {
      max_tokens = std::atoll(value.c_str());
    } else {
      return Fail("unknown flag " + arg);
    }
  }
  if (out_dir.empty()) return Fail("--out is required");

  auto path = kvc::DefaultModelPath();
  if (!path.ok()) return Fail(path.status().ToString());
  auto model = kvc::LlamaModel::Load(*path);
  if (!model.ok()) return Fail(model.status().ToString());
  auto tokenizer = kvc::LoadTokenizer(*path);
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  auto generator = kvc::Generator::Create(model->get(), tokenizer->get());
  if (!generator.ok()) return Fail(generator.status().ToString());

  auto prompt = kvc::EncodeCompressionPrompt(**tokenizer, kvc::ChatFormat::kChatMl, "Answer using only the context.",
                                             document, question);
  if (!prompt.ok()) return Fail(prompt.status().ToString());

  kvc::CompressionSpec spec;
  spec.method = method;
  spec.ratio = method == "none" ? 0 : ratio;
  auto compressor = kvc::CreateCompressionMethod(spec);
  if (!compressor.ok()) return Fail(compressor.status().ToString());
  kvc::CompressionInput in;
  in.model = model->get();
  in.context = prompt->context;
  in.protected_prefix = prompt->protected_prefix;
  in.suffix = prompt->suffix;
  auto result = (*compressor)->Compress(in);
  if (!result.ok()) return Fail(result.status().ToString());

  kvc::KvcProvenance provenance;
  provenance.model_name = (*model)->config().name;
  provenance.rope = kvc::RopeMetadata((*model)->config());
  provenance.spec = {{"method", method}, {"ratio", spec.ratio}};
  provenance.tokens_in = prompt->context.size();

  auto decode = [&](const kvc::KvCache& cache) -> absl::StatusOr<std::vector<int64_t>> {
    kvc::GenerationRequest req;
    req.caches = {&cache};
    req.suffix = prompt->suffix;
    req.sampling.max_tokens = max_tokens;
    auto r = (*generator)->Generate(req);
    if (!r.ok()) return r.status();
    return r->tokens;
  };

  nlohmann::json report = {{"method", method},
                           {"ratio", spec.ratio},
                           {"suffix", prompt->suffix},
                           {"next_position", result->cache.next_position()},
                           {"cache_length", result->cache.length()}};
  for (const auto& [name, dtype] : {std::pair<std::string, kvc::KvcDtype>{"f32", kvc::KvcDtype::kF32},
                                    std::pair<std::string, kvc::KvcDtype>{"int8", kvc::KvcDtype::kInt8}}) {
    auto bytes = kvc::EncodeKvCache(result->cache, provenance, {dtype, kvc::KvcCodec::kNone});
    if (!bytes.ok()) return Fail(bytes.status().ToString());
    if (!WriteFile(out_dir + "/" + method + "_" + name + ".kvc", *bytes)) return Fail("cannot write into " + out_dir);
    // Decode what the file holds (for int8: the dequantized cache), as the service would after a load.
    kvc::KvcDecodeOptions options;
    options.expected_fingerprint = (*model)->fingerprint();
    options.dtype = (*model)->dtype();
    auto loaded = kvc::DecodeKvCache(*bytes, options);
    if (!loaded.ok()) return Fail(loaded.status().ToString());
    auto tokens = decode(loaded->cache);
    if (!tokens.ok()) return Fail(tokens.status().ToString());
    report["tokens_" + name] = *tokens;
  }
  if (!WriteFile(out_dir + "/" + method + ".json", report.dump(1) + "\n")) return Fail("cannot write into " + out_dir);
  return 0;
}
