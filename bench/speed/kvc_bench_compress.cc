// Times kvc's compression methods on one prompt (ids from `kvc-eval --tokenize-only`): one warm-up and R
// timed runs per method; prints one JSON line per method: {"method", "ratio", "median_s", "times_s", "kept",
// "chunks"}. bench/speed/run.py puts these next to kvpress and transformers. On CUDA each line also has the
// caching allocator's bytes: "weights_bytes" held after loading, "peak_bytes" the most held during that
// method's runs, so that peak_bytes - weights_bytes is what one compression needs on top of the model.
// --profile DIR runs each method once more under LibTorch's profiler (after the timed runs, which it does not
// touch) and writes DIR/METHOD.trace.json (a Chrome trace) and DIR/METHOD.md (time per op, Finch's phases,
// kernels, host waits for the device); the JSON line then has "profile": its totals.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/DeviceAccelerator.h>
#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "bench/speed/op_profile.h"
#include "compressor/methods/compression.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "compressor/model/default_model.h"
#include "compressor/model/model_dtype.h"

int main(int argc, char** argv) {
  CLI::App app{"Time kvc's compression methods on one prompt"};
  std::string ids_file, model_path, methods_arg = "none,finch", device = "cpu", dtype_arg = "auto",
              weights_arg = "float";
  double ratio = 8;
  int repeats = 3, threads = 2;
  std::vector<std::string> option_args;
  std::string profile_dir;
  app.add_option("--ids", ids_file, "one JSON line from kvc-eval --tokenize-only")->required();
  app.add_option("--model", model_path, "model (default: the packaged SmolLM2)");
  app.add_option("--methods", methods_arg, "comma-separated methods");
  app.add_option("--ratio", ratio, "compression ratio (none ignores it)");
  app.add_option("--repeats", repeats, "timed runs")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "intra-op threads");
  app.add_option("--device", device, "cpu or cuda[:N]");
  app.add_option("--dtype", dtype_arg, "model dtype: auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16");
  app.add_option("--weights", weights_arg, "linear weights: float, q4 or int8 (the last two CPU only)");
  app.add_option("--option", option_args, "METHOD.NAME=VALUE");
  app.add_option("--profile", profile_dir, "directory for one profiled run per method (trace and op table)");
  CLI11_PARSE(app, argc, argv);
  if (model_path.empty()) model_path = kvc::DefaultModelPath().value_or("");
  kvc::ModelOptions mo;
  mo.num_threads = threads;
  mo.device = device;
  auto dtype = kvc::ParseModelDtype(dtype_arg);
  if (!dtype.ok()) {
    std::cerr << dtype.status() << "\n";
    return 2;
  }
  mo.dtype = *dtype;
  auto weights = kvc::ParseWeightFormat(weights_arg);
  if (!weights.ok()) {
    std::cerr << weights.status() << "\n";
    return 2;
  }
  mo.weights = *weights;
  auto model = kvc::LlamaModel::Load(model_path, mo);
  if (!model.ok()) {
    std::cerr << model.status() << "\n";
    return 1;
  }
  std::ifstream in(ids_file);
  std::string line;
  std::getline(in, line);
  auto rec = nlohmann::json::parse(line, nullptr, false);
  if (!rec.is_object()) {
    std::cerr << "cannot parse " << ids_file << "\n";
    return 1;
  }
  kvc::CompressionInput input;
  input.model = model->get();
  input.context = rec["context_ids"].get<std::vector<int64_t>>();
  input.protected_prefix = rec["protected_prefix"].get<int64_t>();
  input.suffix = rec["suffix_ids"].get<std::vector<int64_t>>();
  // Span-aware methods read word and sentence starts from the tokens, as the server gives them.
  auto tokenizer = kvc::LoadTokenizer(model_path);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  auto boundaries = kvc::TextBoundaries(**tokenizer, input.context);
  if (!boundaries.ok()) {
    std::cerr << boundaries.status() << "\n";
    return 1;
  }
  input.boundaries = *std::move(boundaries);
  const bool on_cuda = (*model)->device().is_cuda();
  const c10::DeviceIndex cuda_index = on_cuda ? std::max<c10::DeviceIndex>((*model)->device().index(), 0) : 0;
  // Python's torch.cuda.max_memory_allocated reads the same counters; a C++ binary has to ask the allocator.
  auto allocated = [&](bool peak) -> int64_t {
    const auto stats = at::accelerator::getDeviceStats(cuda_index);
    const auto& s = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    return peak ? s.peak : s.current;
  };
  const int64_t weights_bytes = on_cuda ? allocated(false) : 0;
  std::map<std::string, std::map<std::string, std::string>> options;
  for (const std::string& o : option_args) {
    std::vector<std::string> kv = absl::StrSplit(o, absl::MaxSplits('=', 1));
    std::vector<std::string> mk = absl::StrSplit(kv[0], absl::MaxSplits('.', 1));
    if (kv.size() == 2 && mk.size() == 2) options[mk[0]][mk[1]] = kv[1];
  }
  for (absl::string_view name : absl::StrSplit(methods_arg, ',', absl::SkipEmpty())) {
    kvc::CompressionSpec spec;
    spec.method = std::string(name);
    spec.ratio = name == "none" ? 0 : ratio;
    spec.options = options[spec.method];
    auto method = kvc::CreateCompressionMethod(spec);
    if (!method.ok()) {
      std::cerr << method.status() << "\n";
      return 2;
    }
    std::vector<double> times;
    int64_t kept = 0, chunks = 0;
    if (on_cuda) at::accelerator::resetPeakStats(cuda_index);
    for (int r = 0; r <= repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      auto result = (*method)->Compress(input);
      if ((*model)->device().is_cuda()) torch::cuda::synchronize();  // time the work, not its queueing
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!result.ok()) {
        std::cerr << result.status() << "\n";
        return 1;
      }
      kept = result->stats.tokens_out;
      chunks = static_cast<int64_t>(result->stats.chunk_seconds.size());
      if (r > 0) times.push_back(s);
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                      : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    nlohmann::json out = {{"engine", "kvc"}, {"method", spec.method}, {"ratio", spec.ratio}, {"median_s", median},
                          {"times_s", times}, {"kept", kept}, {"chunks", chunks},
                          {"context_tokens", input.context.size()}, {"suffix_tokens", input.suffix.size()},
                          {"device", (*model)->device().str()}, {"dtype", c10::toString((*model)->dtype())},
                          {"weights", kvc::WeightFormatName((*model)->weights())}};
    if (on_cuda) {
      out["weights_bytes"] = weights_bytes;
      out["peak_bytes"] = allocated(true);
    }
    if (!profile_dir.empty()) {
      kvc::OpProfileOptions po;
      po.cuda = on_cuda;
      po.trace_path = profile_dir + "/" + spec.method + ".trace.json";
      auto profile = kvc::ProfileCall([&] { return (*method)->Compress(input).status(); }, po);
      if (!profile.ok()) {
        std::cerr << profile.status() << "\n";
        return 1;
      }
      const std::string table_path = profile_dir + "/" + spec.method + ".md";
      std::ofstream table(table_path);
      table << "# " << spec.method << ", " << input.context.size() << " context tokens, " << (*model)->device().str()
            << "\n\n" << kvc::OpProfileTable(*profile, 25);
      if (!table.good()) {
        std::cerr << "cannot write " << table_path << "\n";
        return 1;
      }
      out["profile"] = {{"wall_ms", profile->wall_ms}, {"device_ms", profile->device_ms},
                        {"kernels", profile->kernels}, {"host_waits", profile->host_waits},
                        {"table", table_path}, {"trace", po.trace_path}};
    }
    std::cout << out.dump() << std::endl;
  }
  return 0;
}
