// Times kvc's prefill (chunked forward over a prompt, logits for the last token only) on a model.
//
//   kvc-bench-prefill --model PATH --ids-file FILE [--threads N] [--repeats R] [--chunk C]
//
// FILE holds one prompt per line as space-separated token ids. For each line, one warm-up run is followed by
// R timed runs; one JSON object per line is printed: {"tokens": N, "median_s": x, "times_s": [...]}.
// bench/prefill/prefill_bench.py runs this next to transformers and llama.cpp.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "compressor/model/llama_model.h"

int main(int argc, char** argv) {
  CLI::App app{"Time kvc's prefill"};
  std::string model_path, ids_file;
  int threads = 0, repeats = 3;
  int64_t chunk = 512;
  app.add_option("--model", model_path, "model file or directory")->required();
  app.add_option("--ids-file", ids_file, "one prompt per line, space-separated token ids")->required();
  app.add_option("--threads", threads, "intra-op threads (0: LibTorch default)");
  app.add_option("--repeats", repeats, "timed runs per prompt")->check(CLI::PositiveNumber);
  app.add_option("--chunk", chunk, "prefill chunk size in tokens")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  kvc::ModelOptions options;
  options.num_threads = threads;
  auto model = kvc::LlamaModel::Load(model_path, options);
  if (!model.ok()) {
    std::cerr << "cannot load model: " << model.status() << "\n";
    return 1;
  }
  std::ifstream in(ids_file);
  if (!in) {
    std::cerr << "cannot read " << ids_file << "\n";
    return 1;
  }
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<int64_t> ids;
    for (int64_t id; ss >> id;) ids.push_back(id);
    if (ids.empty()) continue;
    std::vector<double> times;
    for (int r = 0; r <= repeats; ++r) {
      kvc::KvCache cache = (*model)->NewCache();
      auto t0 = std::chrono::steady_clock::now();
      auto logits = (*model)->Prefill(ids, cache, chunk);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!logits.ok()) {
        std::cerr << "prefill failed: " << logits.status() << "\n";
        return 1;
      }
      if (r > 0) times.push_back(s);  // run 0 warms up allocators and kernels
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                      : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    std::cout << "{\"tokens\": " << ids.size() << ", \"median_s\": " << median << ", \"times_s\": [";
    for (size_t i = 0; i < times.size(); ++i) std::cout << (i ? ", " : "") << times[i];
    std::cout << "]}" << std::endl;
  }
  return 0;
}
