// Load path throughput, side by side in one run:
//   memcpy        a plain copy of the .kvc bytes (the yardstick)
//   file get      FileStore Get (read from the page cache into a string)
//   file map+open GetValue (a read-only map of the file), then KvcReader::Open with every checksum verified:
//                 the reader's views point into the map, so this is the whole load path of a server
//   file map+decode  GetValue, then DecodeKvCache into float32 KvCache tensors (one copy into torch)
//   redis get     RedisStore Get on loopback (a redis-server started for the run)
// and the bytes per kept token of each dtype and codec, on a real compressed SmolLM2 cache.
//
//   kvc-bench-load --data ../shared/eval/dev.jsonl --record 40 --ratio 8
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/methods/compression.h"
#include "compressor/model/default_model.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/tokenizer.h"
#include "service/store/cache_store.h"
#include "service/store/redis_server_for_test.h"

namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double MedianSeconds(int repeats, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    if (!f()) return -1;
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return Median(t);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cache load throughput (file and Redis stores vs memcpy) and bytes per kept token"};
  std::string data, model_path, out_path, dir = "/tmp/kvc-bench-load";
  int record = 40, repeats = 15, threads = 2;
  double ratio = 8;
  app.add_option("--data", data, "dev.jsonl-format file")->required();
  app.add_option("--record", record, "0-based line of the record to compress");
  app.add_option("--ratio", ratio, "Finch compression ratio");
  app.add_option("--model", model_path, "model (default: the packaged SmolLM2)");
  app.add_option("--repeats", repeats, "timed runs per path")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "intra-op threads");
  app.add_option("--dir", dir, "scratch directory for the file store and redis");
  app.add_option("--out", out_path, "also write the report here");
  CLI11_PARSE(app, argc, argv);
  auto fail = [](const absl::Status& s) {
    std::cerr << "kvc-bench-load: " << s << "\n";
    return 1;
  };

  // A real cache: one dev record through Finch.
  if (model_path.empty()) model_path = kvc::DefaultModelPath().value_or("");
  kvc::ModelOptions mo;
  mo.num_threads = threads;
  auto model = kvc::LlamaModel::Load(model_path, mo);
  if (!model.ok()) return fail(model.status());
  auto tok = kvc::LoadTokenizer(model_path);
  if (!tok.ok()) return fail(tok.status());
  std::ifstream in(data);
  std::string line;
  for (int i = 0; i <= record && std::getline(in, line);) ++i;
  auto rec = nlohmann::json::parse(line, nullptr, false);
  if (!rec.is_object()) return fail(absl::InvalidArgumentError("no record " + std::to_string(record)));
  auto prompt = kvc::EncodeCompressionPrompt(**tok, kvc::DetectChatFormat((*tok)->chat_template()),
                                             "Answer the question using only the context.",
                                             rec["context"].get<std::string>(), rec["question"].get<std::string>());
  if (!prompt.ok()) return fail(prompt.status());
  kvc::CompressionInput input;
  input.model = model->get();
  input.context = prompt->context;
  input.protected_prefix = prompt->protected_prefix;
  input.suffix = prompt->suffix;
  kvc::CompressionSpec spec{.method = "finch", .ratio = ratio};
  auto compressed = (*kvc::CreateCompressionMethod(spec))->Compress(input);
  if (!compressed.ok()) return fail(compressed.status());
  kvc::KvcProvenance prov;
  prov.model_name = (*model)->config().name;
  prov.rope = kvc::RopeMetadata((*model)->config());
  prov.spec = {{"method", "finch"}, {"ratio", ratio}};
  prov.tokens_in = input.context.size();
  const int64_t kept = compressed->cache.length();

  std::string report = absl::StrFormat("Cache: record %d (%d context tokens), Finch %gx, %d kept entries per head; "
                                       "%d layers x %d KV heads x head_dim %d.\n\n",
                                       record, input.context.size(), ratio, kept, (*model)->config().num_layers,
                                       (*model)->config().num_kv_heads, (*model)->config().head_dim);
  report += "| dtype | codec | bytes | bytes per kept token | encode ms |\n|---|---|---:|---:|---:|\n";
  std::string f32_bytes;
  for (kvc::KvcDtype dt : {kvc::KvcDtype::kF32, kvc::KvcDtype::kBF16, kvc::KvcDtype::kF16, kvc::KvcDtype::kInt8}) {
    for (kvc::KvcCodec codec : {kvc::KvcCodec::kNone, kvc::KvcCodec::kZstd}) {
      absl::StatusOr<std::string> bytes;
      const double s = MedianSeconds(3, [&] { return (bytes = kvc::EncodeKvCache(compressed->cache, prov, {dt, codec})).ok(); });
      if (!bytes.ok()) return fail(bytes.status());
      if (dt == kvc::KvcDtype::kF32 && codec == kvc::KvcCodec::kNone) f32_bytes = *bytes;
      report += absl::StrFormat("| %s | %s | %d | %.0f | %.1f |\n", kvc::KvcDtypeName(dt), kvc::KvcCodecName(codec),
                                bytes->size(), static_cast<double>(bytes->size()) / kept, s * 1e3);
    }
  }

  // Throughput of the load paths on the f32 file, the largest.
  const std::string id(64, 'a');
  std::filesystem::remove_all(dir);
  auto file_store = kvc::OpenCacheStore("file://" + dir + "/store", {});
  if (!file_store.ok()) return fail(file_store.status());
  if (auto s = (*file_store)->Put(id, f32_bytes); !s.ok()) return fail(s);
  auto redis = kvc::store_testing::RedisServerForTest::Start(dir + "/redis");
  if (!redis.ok()) return fail(redis.status());
  auto redis_store = kvc::OpenCacheStore((*redis)->Uri(), {});
  if (!redis_store.ok()) return fail(redis_store.status());
  if (auto s = (*redis_store)->Put(id, f32_bytes); !s.ok()) return fail(s);

  const double mb = f32_bytes.size() / 1e6;
  std::string copy(f32_bytes.size(), '\0');
  struct Row {
    std::string name;
    double seconds;
  };
  std::vector<Row> rows;
  // Interleave the paths within each repeat, so that machine noise hits all of them alike.
  std::vector<std::vector<double>> t(5);
  for (int r = 0; r < repeats; ++r) {
    auto time = [&](int i, auto&& f) {
      auto t0 = Clock::now();
      bool ok = f();
      t[i].push_back(ok ? std::chrono::duration<double>(Clock::now() - t0).count() : 1e9);
    };
    time(0, [&] {
      std::memcpy(copy.data(), f32_bytes.data(), f32_bytes.size());
      return copy[copy.size() / 2] == f32_bytes[f32_bytes.size() / 2];
    });
    time(1, [&] { return (*file_store)->Get(id).ok(); });
    time(2, [&] {
      auto v = (*file_store)->GetValue(id);
      return v.ok() && kvc::KvcReader::Open((*v)->bytes()).ok();
    });
    time(3, [&] {
      auto v = (*file_store)->GetValue(id);
      return v.ok() && kvc::DecodeKvCache((*v)->bytes()).ok();
    });
    time(4, [&] { return (*redis_store)->Get(id).ok(); });
  }
  const char* names[] = {"memcpy", "file get (read into a string)", "file map + open (checksums verified, zero-copy)",
                         "file map + decode to float32 tensors",
                         "redis get (loopback)"};
  const double base = Median(t[0]);
  report += absl::StrFormat("\nLoad of the f32 file (%.1f MB), median of %d interleaved runs:\n\n", mb, repeats);
  report += "| path | median ms | MB/s | vs memcpy |\n|---|---:|---:|---:|\n";
  for (int i = 0; i < 5; ++i) {
    const double m = Median(t[i]);
    report += absl::StrFormat("| %s | %.2f | %.0f | %.0f%% |\n", names[i], m * 1e3, mb / m, 100 * base / m);
  }
  std::cout << report;
  if (!out_path.empty()) std::ofstream(out_path) << report;
  std::filesystem::remove_all(dir);
  return 0;
}
