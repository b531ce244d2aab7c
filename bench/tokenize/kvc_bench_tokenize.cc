// Single-thread encode speed of kvc's tokenizer on the contexts of a dev.jsonl file, the counterpart of
// hf_tokenize_bench.py. Prints one JSON line:
//   {"engine": "kvc", "bytes": B, "tokens": T, "median_s": s, "mb_per_s": x}
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "compressor/model/default_model.h"
#include "compressor/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{"Time kvc's tokenizer on dev.jsonl contexts"};
  std::string dev, model;
  int repeats = 3;
  app.add_option("--dev", dev, "a dev.jsonl file")->required();
  app.add_option("--tokenizer", model, "tokenizer.json, tokenizer.model or .gguf (default: the packaged model)");
  app.add_option("--repeats", repeats, "timed passes")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (model.empty()) {
    auto found = kvc::DefaultModelPath();
    if (!found.ok()) {
      std::cerr << found.status().message() << "\n";
      return 1;
    }
    model = *found;
  }
  auto tok = kvc::LoadTokenizer(model);
  if (!tok.ok()) {
    std::cerr << tok.status().message() << "\n";
    return 1;
  }
  std::vector<std::string> texts;
  std::ifstream in(dev);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("context") && j["context"].is_string()) texts.push_back(j["context"]);
  }
  if (texts.empty()) {
    std::cerr << "no contexts in " << dev << "\n";
    return 1;
  }
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  auto pass = [&]() -> size_t {
    size_t n = 0;
    for (const auto& t : texts) n += (*tok)->Encode(t).value().size();
    return n;
  };
  size_t tokens = pass();  // warm-up, as the Hugging Face side does
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    pass();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  double median = times.size() % 2 ? times[times.size() / 2]
                                    : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
  std::cout << "{\"engine\": \"kvc\", \"bytes\": " << bytes << ", \"tokens\": " << tokens
            << ", \"median_s\": " << median << ", \"mb_per_s\": " << bytes / 1e6 / median << "}" << std::endl;
  return 0;
}
