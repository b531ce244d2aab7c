// GeneratorServiceImpl behind a real in-process grpc::Server on a loopback port over a memory:// store,
// called through the generated stub. Caches are made by the compressor library on a tiny random Llama and
// stored as .kvc bytes, exactly as the compress role stores them. The stream must equal kvc::Generator's
// direct result on the same caches; every documented error code is checked; cancels and deadlines stop the
// work.
#include "service/generator_service.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/generate/generator.h"
#include "compressor/kv/compose.h"
#include "compressor/methods/compression.h"
#include "compressor/util/sha256.h"
#include "service/cache_loader.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

using kvc::v1::GenerateRequest;
using kvc::v1::GenerateResponse;

constexpr char kDocA[] =
    "the lighthouse on marrow point was built by ada quill and its lamp burned whale oil for thirty years";
constexpr char kDocB[] = "the village of tarn hollow holds a market every thursday and its bakery sells rye bread";
constexpr char kQuery[] = "who built the lighthouse";

// tests/tools/make_fixtures.py's tiny_chat: a tiny random Llama with a trained byte-level BPE tokenizer,
// ChatML special tokens and SmolLM2's chat template, so that queries go through the real suffix template.
std::unique_ptr<ModelRuntime> LoadRuntime() {
  ModelRuntimeOptions options;
  options.path = kvc::testing::TestData("tiny_chat");
  auto runtime = ModelRuntime::Load(options);
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  return runtime.ok() ? std::move(*runtime) : nullptr;
}

std::chrono::system_clock::time_point In(std::chrono::milliseconds ms) { return std::chrono::system_clock::now() + ms; }

// What a Generate stream delivered.
struct Streamed {
  std::vector<v1::TextDelta> deltas;
  std::optional<v1::Usage> usage;
  bool message_after_usage = false;
  grpc::Status status;

  std::vector<int64_t> Tokens() const {
    std::vector<int64_t> t;
    for (const v1::TextDelta& d : deltas) t.insert(t.end(), d.token_ids().begin(), d.token_ids().end());
    return t;
  }
  std::string Text() const {
    std::string t;
    for (const v1::TextDelta& d : deltas) t += d.text();
    return t;
  }
};

// A stored cache and what made it.
struct StoredCache {
  std::string id;
  std::string bytes;
  int64_t prefix_tokens = 0;
};

class GeneratorServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    runtime_ = LoadRuntime().release();
    ASSERT_NE(runtime_, nullptr);
    auto g = Generator::Create(&runtime_->model(), &runtime_->tokenizer());
    ASSERT_TRUE(g.ok()) << g.status();
    generator_ = g->release();
  }
  static void TearDownTestSuite() {
    delete generator_;
    delete runtime_;
  }

  void SetUp() override { StartServer(SchedulerOptions{}); }
  void TearDown() override { StopServer(); }

  void StartServer(const SchedulerOptions& scheduler_options, GeneratorServiceOptions options = {}) {
    auto store = OpenCacheStore("memory://", {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto scheduler = Scheduler::Create(scheduler_options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(*scheduler);
    registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<ServiceMetrics>(*registry_);
    options.executor.threads = 2;
    auto service = GeneratorServiceImpl::Create(runtime_, scheduler_.get(), store_.get(), metrics_.get(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Generator::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  // Calls still running after `grace` are cancelled.
  void StopServer(std::chrono::milliseconds grace = std::chrono::seconds(10)) {
    if (server_ != nullptr) server_->Shutdown(In(grace));
    server_.reset();
    service_.reset();  // waits for work still queued or running
    scheduler_.reset();
    metrics_.reset();
    store_.reset();
  }

  // Compresses [prefix][doc] with `method` on the served model, stores the .kvc and returns its id.
  StoredCache Store(const std::string& doc, const std::string& method = "finch", double ratio = 2,
                    std::optional<std::string> fingerprint = std::nullopt) {
    auto prefix = runtime_->EncodePrefix(kDefaultSystemPrompt);
    auto body = runtime_->EncodeDocument(doc);
    auto suffix = runtime_->EncodeSuffix(kQuery);
    EXPECT_TRUE(prefix.ok() && body.ok() && suffix.ok());
    CompressionInput in;
    in.model = &runtime_->model();
    in.context = *prefix;
    in.context.insert(in.context.end(), body->begin(), body->end());
    in.protected_prefix = static_cast<int64_t>(prefix->size());
    in.suffix = *suffix;
    CompressionSpec spec;
    spec.method = method;
    spec.ratio = method == "none" ? 0 : ratio;
    auto compress = CreateCompressionMethod(spec);
    EXPECT_TRUE(compress.ok()) << compress.status();
    auto result = (*compress)->Compress(in);
    EXPECT_TRUE(result.ok()) << result.status();
    if (fingerprint.has_value()) result->cache.set_model_fingerprint(*fingerprint);
    KvcProvenance prov;
    prov.model_name = runtime_->name();
    prov.rope = RopeMetadata(runtime_->model().config());
    prov.spec = {{"method", method}, {"ratio", ratio}};
    prov.tokens_in = in.context.size();
    prov.prefix_tokens = prefix->size();
    auto bytes = EncodeKvCache(result->cache, prov);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    StoredCache stored{Sha256Hex(*bytes), *bytes, static_cast<int64_t>(prefix->size())};
    EXPECT_TRUE(store_->Put(stored.id, stored.bytes).ok());
    return stored;
  }

  static std::vector<int64_t> Suffix(const std::string& query = kQuery) {
    auto s = runtime_->EncodeSuffix(query);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : std::vector<int64_t>{};
  }

  static GenerateRequest Request(const std::vector<std::string>& ids, int32_t max_tokens = 24) {
    GenerateRequest r;
    for (const std::string& id : ids) r.add_cache_ids(id);
    r.set_query(kQuery);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_stop_on_eos(false);  // a random model may emit </s> anywhere
    return r;
  }

  Streamed Call(const GenerateRequest& request,
                std::chrono::system_clock::time_point deadline = In(std::chrono::seconds(60))) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    std::unique_ptr<grpc::ClientReader<GenerateResponse>> reader = stub_->Generate(&ctx, request);
    Streamed out;
    GenerateResponse msg;
    while (reader->Read(&msg)) {
      if (out.usage.has_value()) out.message_after_usage = true;
      if (msg.has_delta()) out.deltas.push_back(msg.delta());
      if (msg.has_usage()) out.usage = msg.usage();
    }
    out.status = reader->Finish();
    return out;
  }

  grpc::StatusCode Code(const GenerateRequest& request) { return Call(request).status.error_code(); }

  // kvc::Generator on the caches as LoadCache gives them (composed the way the proto documents).
  static absl::StatusOr<GenerationResult> Direct(CacheStore& store, const std::vector<std::string>& ids,
                                                 const std::vector<int64_t>& suffix, const SamplingOptions& sampling) {
    std::vector<LoadedCache> loaded;
    for (const std::string& id : ids) {
      auto c = LoadCache(store, *runtime_, id, "direct");
      if (!c.ok()) return c.status();
      loaded.push_back(std::move(*c));
    }
    std::vector<ComposePart> parts;
    for (size_t i = 0; i < loaded.size(); ++i) {
      parts.push_back({&loaded[i].cache, i == 0 ? 0 : loaded[i].prefix_tokens});
    }
    std::optional<KvCache> composed;
    if (loaded.size() == 1) {
      composed.emplace(std::move(loaded[0].cache));
    } else {
      auto c = ComposeCaches(parts, runtime_->model().rope());
      if (!c.ok()) return c.status();
      composed.emplace(std::move(*c));
    }
    GenerationRequest req;
    req.caches = {&*composed};
    req.suffix = suffix;
    req.sampling = sampling;
    return generator_->Generate(req);
  }

  static int32_t Window() { return static_cast<int32_t>(runtime_->model().config().max_position_embeddings); }

  double Metric(const std::string& name) {
    for (const prometheus::MetricFamily& f : registry_->Collect()) {
      if (f.name != name) continue;
      double sum = 0;
      for (const prometheus::ClientMetric& m : f.metric) {
        sum += f.type == prometheus::MetricType::Histogram ? static_cast<double>(m.histogram.sample_count)
               : f.type == prometheus::MetricType::Gauge   ? m.gauge.value
                                                            : m.counter.value;
      }
      return sum;
    }
    return 0;
  }

  // Waits until the scheduler has nothing queued or running (the server's decoding is over).
  void WaitSchedulerIdle() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
      SchedulerStats s = scheduler_->stats();
      if (s.queued_jobs == 0 && s.running_jobs == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    FAIL() << "the scheduler never went idle";
  }

  // Restarts the server (with an empty store) holding calls at the pause points of a fresh directory, and
  // returns their control. The directory outlives the server, which TearDown stops first.
  const PauseControl& ServeWithPausePoints() {
    absl::StatusOr<std::unique_ptr<TempPauseDir>> dir = TempPauseDir::Create();
    EXPECT_TRUE(dir.ok()) << dir.status();
    StopServer();
    pause_dir_ = *std::move(dir);
    GeneratorServiceOptions options;
    options.pause_points = pause_dir_->points();
    StartServer(SchedulerOptions{}, options);
    return pause_dir_->control();
  }

  // How many decode steps start from now until the scheduler is idle.
  int StepsUntilIdle(const PauseControl& pause) {
    return pause.CountArrivals(pause_point::kGenerateDecodeStep, absl::Now() + absl::Seconds(60), [this] {
      const SchedulerStats st = scheduler_->stats();
      return st.running_jobs == 0 && st.queued_jobs == 0;
    });
  }

  // Occupies the scheduler's only worker until the returned notification is notified.
  std::shared_ptr<absl::Notification> BlockScheduler() {
    auto release = std::make_shared<absl::Notification>();
    auto started = std::make_shared<absl::Notification>();
    Job job;
    job.cost_tokens = 0;
    job.run = [release, started](const JobStart&) {
      started->Notify();
      release->WaitForNotification();
    };
    EXPECT_TRUE(scheduler_->Submit(std::move(job)).ok());
    started->WaitForNotification();
    return release;
  }

  void WaitQueued(int64_t jobs) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (scheduler_->stats().queued_jobs < jobs && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(scheduler_->stats().queued_jobs, jobs);
  }

  static void ExpectSameAsDirect(const Streamed& got, const GenerationResult& want) {
    ASSERT_TRUE(got.status.ok()) << got.status.error_message();
    EXPECT_EQ(got.Tokens(), want.tokens);
    EXPECT_EQ(got.Text(), want.text);
    ASSERT_TRUE(got.usage.has_value());
    EXPECT_FALSE(got.message_after_usage);
    EXPECT_EQ(got.usage->generated_tokens(), static_cast<int64_t>(want.tokens.size()));
    EXPECT_EQ(got.usage->cached_tokens(), want.cached_tokens);
    EXPECT_EQ(got.usage->prompt_tokens(), want.prompt_tokens);
    // Deltas are contiguous: each starts where the previous ended, and none is empty.
    int64_t next = 0;
    for (const v1::TextDelta& d : got.deltas) {
      EXPECT_EQ(d.index(), next);
      EXPECT_GE(d.token_ids_size(), 1);
      next += d.token_ids_size();
    }
  }

  std::unique_ptr<TempPauseDir> pause_dir_;  // declared first: it outlives the service
  static inline ModelRuntime* runtime_ = nullptr;
  static inline Generator* generator_ = nullptr;
  std::unique_ptr<CacheStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<GeneratorServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Generator::Stub> stub_;
};

TEST_F(GeneratorServiceTest, GreedyStreamEqualsDirectGeneration) {
  const StoredCache a = Store(kDocA);
  SamplingOptions sampling;
  sampling.max_tokens = 24;
  sampling.stop_on_eos = false;
  auto want = Direct(*store_, {a.id}, Suffix(), sampling);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ(want->tokens.size(), 24u);

  const Streamed got = Call(Request({a.id}));
  ExpectSameAsDirect(got, *want);
  const v1::Usage& u = *got.usage;
  EXPECT_EQ(u.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(u.prompt_tokens(), static_cast<int64_t>(Suffix().size()));
  const v1::GenerateTimings& t = u.timings();
  EXPECT_GE(t.queue_seconds(), 0);
  EXPECT_GT(t.load_seconds(), 0);
  EXPECT_GT(t.compose_seconds(), 0);
  EXPECT_GT(t.prefill_seconds(), 0);
  EXPECT_GT(t.decode_seconds(), 0);
  EXPECT_NEAR(t.mean_seconds_per_token(), t.decode_seconds() / 23, 1e-9);
  EXPECT_GT(u.time_to_first_token_seconds(), 0);
  EXPECT_LT(u.time_to_first_token_seconds(), t.total_seconds());
  EXPECT_GE(t.total_seconds(), t.queue_seconds() + t.load_seconds() + t.compose_seconds() + t.prefill_seconds() +
                                   t.decode_seconds());

  // The same suffix given as ids, and the model named by its fingerprint (in upper case): the same stream.
  GenerateRequest by_ids = Request({a.id});
  for (int64_t id : Suffix()) by_ids.mutable_suffix_ids()->add_ids(static_cast<int32_t>(id));
  std::string fingerprint = runtime_->fingerprint();
  for (char& c : fingerprint) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  by_ids.set_model(fingerprint);
  ExpectSameAsDirect(Call(by_ids), *want);

  EXPECT_EQ(Metric("kvc_generated_tokens_total"), 48);
  EXPECT_EQ(Metric("kvc_time_to_first_token_seconds"), 2);
  EXPECT_EQ(Metric("kvc_queue_seconds"), 2);
  EXPECT_EQ(Metric("kvc_store_bytes"), 2.0 * static_cast<double>(a.bytes.size()));
  // On CPU the device holds the weights for kvc; the gauge follows each call.
  EXPECT_EQ(Metric("kvc_device_memory_bytes"), static_cast<double>(runtime_->model().weight_bytes()));
}

// Several questions in one call: one load, one compose, and each answer equal to a call of its own, streamed
// in question order with every message tagged.
TEST_F(GeneratorServiceTest, QuestionsAreAnsweredInTurnFromOneLoad) {
  const StoredCache a = Store(kDocA, "none");
  const StoredCache b = Store(kDocB, "none");
  const std::vector<std::string> questions = {kQuery, "what does the bakery sell", kQuery};
  SamplingOptions sampling;
  sampling.max_tokens = 12;
  sampling.stop_on_eos = false;

  GenerateRequest request = Request({a.id, b.id}, 12);
  for (const std::string& q : questions) request.mutable_questions()->add_queries(q);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(std::chrono::seconds(60)));
  std::unique_ptr<grpc::ClientReader<GenerateResponse>> reader = stub_->Generate(&ctx, request);
  std::vector<Streamed> answers(questions.size());
  std::vector<int32_t> order;  // the question of every message, in stream order
  GenerateResponse msg;
  while (reader->Read(&msg)) {
    const int32_t q = msg.has_delta() ? msg.delta().question() : msg.usage().question();
    ASSERT_GE(q, 0);
    ASSERT_LT(q, static_cast<int32_t>(questions.size()));
    if (answers[q].usage.has_value()) answers[q].message_after_usage = true;
    if (msg.has_delta()) answers[q].deltas.push_back(msg.delta());
    if (msg.has_usage()) answers[q].usage = msg.usage();
    order.push_back(q);
  }
  const grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  for (size_t q = 0; q < questions.size(); ++q) {
    SCOPED_TRACE(questions[q]);
    auto want = Direct(*store_, {a.id, b.id}, Suffix(questions[q]), sampling);
    ASSERT_TRUE(want.ok()) << want.status();
    answers[q].status = status;
    ExpectSameAsDirect(answers[q], *want);
    // The first question carries the shared work; later ones did not wait for it.
    const v1::GenerateTimings& t = answers[q].usage->timings();
    if (q == 0) {
      EXPECT_GT(t.load_seconds(), 0);
    } else {
      EXPECT_EQ(t.load_seconds(), 0);
      EXPECT_EQ(t.queue_seconds(), 0);
      EXPECT_GE(t.total_seconds(), answers[q - 1].usage->timings().total_seconds());
    }
  }
  // The same question twice is the same answer: nothing of the first answer stayed in the context.
  EXPECT_EQ(answers[0].Tokens(), answers[2].Tokens());
  // Each cache was read from the store once, and every question counted its tokens.
  EXPECT_EQ(Metric("kvc_store_bytes"), static_cast<double>(a.bytes.size() + b.bytes.size()));
  EXPECT_EQ(Metric("kvc_generated_tokens_total"), 36);
  EXPECT_EQ(Metric("kvc_queue_seconds"), 1);
}

TEST_F(GeneratorServiceTest, TwoCachesComposeWithoutTheSecondPrefix) {
  const StoredCache a = Store(kDocA, "finch", 2);
  const StoredCache b = Store(kDocB, "snapkv", 2);
  ASSERT_GT(b.prefix_tokens, 0);
  SamplingOptions sampling;
  sampling.max_tokens = 20;
  sampling.stop_on_eos = false;
  auto want = Direct(*store_, {a.id, b.id}, Suffix(), sampling);
  ASSERT_TRUE(want.ok()) << want.status();

  const Streamed got = Call(Request({a.id, b.id}, 20));
  ExpectSameAsDirect(got, *want);

  // The composed context holds both caches but the second one's prefix only once.
  auto la = LoadCache(*store_, *runtime_, a.id, "a");
  auto lb = LoadCache(*store_, *runtime_, b.id, "b");
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(got.usage->cached_tokens(), la->cache.length() + lb->cache.length() - b.prefix_tokens);

  // The order matters: B then A is another context.
  auto reversed = Direct(*store_, {b.id, a.id}, Suffix(), sampling);
  ASSERT_TRUE(reversed.ok()) << reversed.status();
  ExpectSameAsDirect(Call(Request({b.id, a.id}, 20)), *reversed);
}

TEST_F(GeneratorServiceTest, SamplingAndStopStringsMatchDirectGeneration) {
  const StoredCache a = Store(kDocA);
  SamplingOptions sampling;
  sampling.max_tokens = 32;
  sampling.stop_on_eos = false;
  sampling.temperature = 0.9;
  sampling.top_k = 40;
  sampling.top_p = 0.95;
  sampling.seed = 1234;
  auto want = Direct(*store_, {a.id}, Suffix(), sampling);
  ASSERT_TRUE(want.ok()) << want.status();
  GenerateRequest r = Request({a.id}, 32);
  r.mutable_sampling()->set_temperature(0.9);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_top_p(0.95);
  r.mutable_sampling()->set_seed(1234);
  ExpectSameAsDirect(Call(r), *want);

  // A stop string taken from the middle of the greedy answer ends generation there.
  SamplingOptions greedy;
  greedy.max_tokens = 32;
  greedy.stop_on_eos = false;
  auto full = Direct(*store_, {a.id}, Suffix(), greedy);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_GE(full->text.size(), 12u);
  const std::string stop = full->text.substr(full->text.size() / 2, 3);
  greedy.stop = {stop};
  auto stopped = Direct(*store_, {a.id}, Suffix(), greedy);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  GenerateRequest with_stop = Request({a.id}, 32);
  with_stop.mutable_sampling()->add_stop(stop);
  const Streamed got = Call(with_stop);
  ExpectSameAsDirect(got, *stopped);
  EXPECT_EQ(got.usage->finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(got.Text().find(stop), std::string::npos);
}

TEST_F(GeneratorServiceTest, UnsetSamplingMeansGreedy256TokensStoppingAtEos) {
  const StoredCache a = Store(kDocA);
  auto want = Direct(*store_, {a.id}, Suffix(), SamplingOptions{});
  ASSERT_TRUE(want.ok()) << want.status();
  GenerateRequest r;
  r.add_cache_ids(a.id);
  r.set_query(kQuery);
  r.set_model(runtime_->name());
  const Streamed got = Call(r);
  ExpectSameAsDirect(got, *want);
  EXPECT_EQ(got.usage->finish_reason(), want->finish_reason == "eos" ? v1::FINISH_REASON_EOS
                                                                     : v1::FINISH_REASON_LENGTH);
  if (want->finish_reason == "length") {
    EXPECT_EQ(got.usage->generated_tokens(), 256);
  }
}

TEST_F(GeneratorServiceTest, BadRequestsGetTheDocumentedCodes) {
  const StoredCache good = Store(kDocA);
  StoredCache other = Store(kDocB, "finch", 2, std::string(64, 'e'));  // "made by" another model

  std::string corrupt = good.bytes;
  corrupt[corrupt.size() - 9] ^= 0x55;  // inside the last V section: its checksum no longer matches
  const std::string corrupt_id = std::string(63, 'c') + "1";
  ASSERT_TRUE(store_->Put(corrupt_id, corrupt).ok());
  const std::string truncated_id = std::string(63, 'c') + "2";
  ASSERT_TRUE(store_->Put(truncated_id, good.bytes.substr(0, good.bytes.size() / 2)).ok());
  const std::string garbage_id = std::string(63, 'c') + "3";
  ASSERT_TRUE(store_->Put(garbage_id, "this is not a kvc file at all").ok());

  struct Case {
    std::string name;
    std::function<void(GenerateRequest&)> edit;
    grpc::StatusCode code;
    std::string message;  // a piece the message must contain
  };
  const auto sampling = [](GenerateRequest& r) { return r.mutable_sampling(); };
  // The largest max_tokens that fits the window after the good cache and the query.
  const int32_t window = static_cast<int32_t>(runtime_->model().config().max_position_embeddings);
  auto loaded = LoadCache(*store_, *runtime_, good.id, "good");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const int32_t room = window - static_cast<int32_t>(loaded->cache.next_position() + Suffix().size()) + 1;
  const std::vector<Case> cases = {
      {"no cache ids", [](GenerateRequest& r) { r.clear_cache_ids(); }, grpc::INVALID_ARGUMENT, "cache_ids"},
      {"too many cache ids",
       [&](GenerateRequest& r) {
         for (int i = 0; i < 64; ++i) r.add_cache_ids(good.id);
       },
       grpc::INVALID_ARGUMENT, "cache_ids"},
      {"malformed id", [](GenerateRequest& r) { r.add_cache_ids("not-an-id"); }, grpc::INVALID_ARGUMENT,
       "cache_ids[1]"},
      {"upper-case id", [&](GenerateRequest& r) { r.set_cache_ids(0, std::string(64, 'A')); },
       grpc::INVALID_ARGUMENT, "cache_ids[0]"},
      {"short id", [](GenerateRequest& r) { r.set_cache_ids(0, std::string(63, 'a')); }, grpc::INVALID_ARGUMENT,
       "cache_ids[0]"},
      {"unknown id", [](GenerateRequest& r) { r.add_cache_ids(std::string(64, 'd')); }, grpc::NOT_FOUND,
       "cache_ids[1]"},
      {"cache of another model", [&](GenerateRequest& r) { r.set_cache_ids(0, other.id); },
       grpc::FAILED_PRECONDITION, "cache_ids[0]"},
      {"corrupted bytes", [&](GenerateRequest& r) { r.set_cache_ids(0, corrupt_id); }, grpc::DATA_LOSS,
       "cache_ids[0]"},
      {"truncated bytes", [&](GenerateRequest& r) { r.set_cache_ids(0, truncated_id); }, grpc::DATA_LOSS,
       "cache_ids[0]"},
      {"not a .kvc", [&](GenerateRequest& r) { r.set_cache_ids(0, garbage_id); }, grpc::DATA_LOSS, "cache_ids[0]"},
      {"no prompt", [](GenerateRequest& r) { r.clear_prompt(); }, grpc::INVALID_ARGUMENT, "prompt: empty"},
      {"empty query", [](GenerateRequest& r) { r.set_query(""); }, grpc::INVALID_ARGUMENT, "prompt: empty"},
      {"empty suffix ids", [](GenerateRequest& r) { r.mutable_suffix_ids(); }, grpc::INVALID_ARGUMENT,
       "prompt: empty"},
      {"suffix id past the vocabulary",
       [](GenerateRequest& r) {
         r.mutable_suffix_ids()->add_ids(5);
         r.mutable_suffix_ids()->add_ids(static_cast<int32_t>(runtime_->model().config().vocab_size));
       },
       grpc::INVALID_ARGUMENT, "suffix_ids[1]"},
      {"negative suffix id", [](GenerateRequest& r) { r.mutable_suffix_ids()->add_ids(-1); },
       grpc::INVALID_ARGUMENT, "suffix_ids[0]"},
      {"no questions", [](GenerateRequest& r) { r.mutable_questions(); }, grpc::INVALID_ARGUMENT, "questions: 0"},
      {"too many questions",
       [](GenerateRequest& r) {
         for (int i = 0; i < 65; ++i) r.mutable_questions()->add_queries(kQuery);
       },
       grpc::INVALID_ARGUMENT, "questions: 65"},
      {"an empty question",
       [](GenerateRequest& r) {
         r.mutable_questions()->add_queries(kQuery);
         r.mutable_questions()->add_queries("");
       },
       grpc::INVALID_ARGUMENT, "questions[1]: empty"},
      {"the longest question overflows the window",
       [&](GenerateRequest& r) {
         r.mutable_questions()->add_queries("who");
         r.mutable_questions()->add_queries(kQuery);
         sampling(r)->set_max_tokens(room + 1);
       },
       grpc::OUT_OF_RANGE, absl::StrCat("max_tokens can be at most ", room)},
      {"negative temperature", [&](GenerateRequest& r) { sampling(r)->set_temperature(-0.5); },
       grpc::INVALID_ARGUMENT, "sampling.temperature"},
      {"NaN temperature",
       [&](GenerateRequest& r) { sampling(r)->set_temperature(std::numeric_limits<double>::quiet_NaN()); },
       grpc::INVALID_ARGUMENT, "sampling.temperature"},
      {"infinite temperature",
       [&](GenerateRequest& r) { sampling(r)->set_temperature(std::numeric_limits<double>::infinity()); },
       grpc::INVALID_ARGUMENT, "sampling.temperature"},
      {"negative top_k", [&](GenerateRequest& r) { sampling(r)->set_top_k(-1); }, grpc::INVALID_ARGUMENT,
       "sampling.top_k"},
      {"top_p 0", [&](GenerateRequest& r) { sampling(r)->set_top_p(0); }, grpc::INVALID_ARGUMENT, "sampling.top_p"},
      {"top_p above 1", [&](GenerateRequest& r) { sampling(r)->set_top_p(1.5); }, grpc::INVALID_ARGUMENT,
       "sampling.top_p"},
      {"NaN top_p", [&](GenerateRequest& r) { sampling(r)->set_top_p(std::nan("")); }, grpc::INVALID_ARGUMENT,
       "sampling.top_p"},
      {"max_tokens 0", [&](GenerateRequest& r) { sampling(r)->set_max_tokens(0); }, grpc::INVALID_ARGUMENT,
       "sampling.max_tokens"},
      {"negative max_tokens", [&](GenerateRequest& r) { sampling(r)->set_max_tokens(-3); }, grpc::INVALID_ARGUMENT,
       "sampling.max_tokens"},
      {"empty stop string", [&](GenerateRequest& r) { sampling(r)->add_stop(""); }, grpc::INVALID_ARGUMENT,
       "sampling.stop[0]"},
      {"stop string over 256 bytes", [&](GenerateRequest& r) { sampling(r)->add_stop(std::string(257, 'x')); },
       grpc::INVALID_ARGUMENT, "sampling.stop[0]"},
      {"17 stop strings",
       [&](GenerateRequest& r) {
         for (int i = 0; i < 17; ++i) sampling(r)->add_stop("x");
       },
       grpc::INVALID_ARGUMENT, "sampling.stop"},
      {"another model", [](GenerateRequest& r) { r.set_model("SomeOtherModel-7B"); }, grpc::FAILED_PRECONDITION,
       "model"},
      {"window overflow by one token", [&](GenerateRequest& r) { sampling(r)->set_max_tokens(room + 1); },
       grpc::OUT_OF_RANGE, absl::StrCat("max_tokens can be at most ", room)},
      {"window overflow", [&](GenerateRequest& r) { sampling(r)->set_max_tokens(window); }, grpc::OUT_OF_RANGE,
       "sampling.max_tokens"},
      {"window overflow with two caches",
       [&](GenerateRequest& r) {
         r.add_cache_ids(good.id);  // the room one cache leaves is too much with two
         sampling(r)->set_max_tokens(room);
       },
       grpc::OUT_OF_RANGE, "sampling.max_tokens"},
      {"prompt alone overflows the window",
       [&](GenerateRequest& r) {
         for (int64_t i = 0; i < window + 10; ++i) r.mutable_suffix_ids()->add_ids(40);
         sampling(r)->set_max_tokens(1);
       },
       grpc::OUT_OF_RANGE, "the prompt alone does not fit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    GenerateRequest r = Request({good.id});
    c.edit(r);
    const Streamed got = Call(r);
    EXPECT_EQ(got.status.error_code(), c.code) << got.status.error_message();
    EXPECT_NE(got.status.error_message().find(c.message), std::string::npos) << got.status.error_message();
    EXPECT_TRUE(got.deltas.empty());
    EXPECT_FALSE(got.usage.has_value());
  }
  // Nothing was decoded for any of them, and the server still answers.
  EXPECT_EQ(Metric("kvc_generated_tokens_total"), 0);
  const Streamed ok = Call(Request({good.id}, 4));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.Tokens().size(), 4u);
}

TEST_F(GeneratorServiceTest, FullQueueIsResourceExhausted) {
  StopServer();
  SchedulerOptions small;
  small.max_queue_tokens = 200;
  StartServer(small);
  const StoredCache a = Store(kDocA);
  std::shared_ptr<absl::Notification> release = BlockScheduler();

  // 150 queued tokens fit; another 150 do not.
  grpc::ClientContext first_ctx;
  first_ctx.set_deadline(In(std::chrono::seconds(60)));
  GenerateRequest first = Request({a.id});
  first.mutable_sampling()->set_max_tokens(150 - static_cast<int32_t>(Suffix().size()));
  auto first_reader = stub_->Generate(&first_ctx, first);
  WaitQueued(1);
  const Streamed second = Call(first);
  EXPECT_EQ(second.status.error_code(), grpc::RESOURCE_EXHAUSTED) << second.status.error_message();
  // A request that could never fit the queue at all is refused the same way.
  const Streamed huge = Call(Request({a.id}, 300));
  EXPECT_EQ(huge.status.error_code(), grpc::RESOURCE_EXHAUSTED) << huge.status.error_message();

  release->Notify();
  GenerateResponse msg;
  int64_t tokens = 0;
  bool usage = false;
  while (first_reader->Read(&msg)) {
    tokens += msg.delta().token_ids_size();
    usage = usage || msg.has_usage();
  }
  EXPECT_TRUE(first_reader->Finish().ok());
  EXPECT_EQ(tokens, 150 - static_cast<int64_t>(Suffix().size()));
  EXPECT_TRUE(usage);
}

TEST_F(GeneratorServiceTest, ExpiredDeadlinesAreNotDecoded) {
  const PauseControl& pause = ServeWithPausePoints();
  const StoredCache a = Store(kDocA);
  // Already expired when sent.
  EXPECT_EQ(Call(Request({a.id}), In(std::chrono::milliseconds(-1000))).status.error_code(),
            grpc::DEADLINE_EXCEEDED);

  // Expires while waiting in the queue: the job is not started. The call is held once queued until the
  // server has seen its deadline pass, and only then is the device free.
  std::shared_ptr<absl::Notification> release = BlockScheduler();
  grpc::ClientContext ctx;
  ctx.set_deadline(In(std::chrono::seconds(2)));  // far more than loading and queueing a small cache needs
  ASSERT_TRUE(pause.Arm(pause_point::kGenerateQueued).ok());
  auto reader = stub_->Generate(&ctx, Request({a.id}));
  const absl::Status queued = pause.WaitHeld(pause_point::kGenerateQueued, absl::Now() + absl::Seconds(60));
  EXPECT_TRUE(queued.ok()) << queued;
  GenerateResponse msg;
  EXPECT_FALSE(reader->Read(&msg));
  EXPECT_EQ(reader->Finish().error_code(), grpc::DEADLINE_EXCEEDED);
  if (queued.ok()) {
    const absl::Status seen = pause.WaitStopSeen(pause_point::kGenerateQueued, absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(seen.ok()) << seen;
    EXPECT_TRUE(pause.Release(pause_point::kGenerateQueued).ok());
  }
  release->Notify();
  WaitSchedulerIdle();
  EXPECT_EQ(Metric("kvc_generated_tokens_total"), 0);

  // Expires while decoding: held after five tokens until the server has seen the deadline pass, decoding
  // stops at the next step. The deadline must leave the call time to get there; it grows when it did not
  // (a slow or busy machine).
  const int32_t max_tokens = Window() - 200;
  for (auto timeout : {std::chrono::seconds(2), std::chrono::seconds(8), std::chrono::seconds(32),
                       std::chrono::seconds(120)}) {
    const double before = Metric("kvc_generated_tokens_total");
    const auto deadline = In(timeout);
    Streamed partial;
    std::atomic<bool> done{false};
    ASSERT_TRUE(pause.Arm(pause_point::kGenerateDecodeStep).ok());  // before the call: steps count from 1
    std::thread call([&] {
      partial = Call(Request({a.id}, max_tokens), deadline);
      done = true;
    });
    const absl::Time until = absl::FromChrono(deadline);
    const absl::Status held =
        pause.HoldAtArmed(pause_point::kGenerateDecodeStep, 6, until, [&done] { return done.load(); });
    const bool in_time = held.ok() && absl::Now() < until;
    if (held.ok()) {
      const absl::Status seen = pause.WaitStopSeen(pause_point::kGenerateDecodeStep, until + absl::Seconds(60));
      EXPECT_TRUE(seen.ok()) << seen;
      EXPECT_TRUE(pause.Release(pause_point::kGenerateDecodeStep).ok());
    }
    pause.Disarm(pause_point::kGenerateDecodeStep);
    const int after = StepsUntilIdle(pause);
    call.join();
    EXPECT_EQ(partial.status.error_code(), grpc::DEADLINE_EXCEEDED);
    EXPECT_FALSE(partial.usage.has_value());
    if (!in_time) continue;
    EXPECT_EQ(after, 0);
    EXPECT_EQ(Metric("kvc_generated_tokens_total") - before, 5);
    break;
  }
}

// Held after five tokens and cancelled; once the held step has seen the cancel it goes on, and decoding
// stops there: no other step starts.
TEST_F(GeneratorServiceTest, ClientCancelMidStreamStopsDecoding) {
  const PauseControl& pause = ServeWithPausePoints();
  const StoredCache a = Store(kDocA);
  const int32_t max_tokens = Window() - 200;
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const double before = Metric("kvc_generated_tokens_total");
    grpc::ClientContext ctx;
    ctx.set_deadline(In(std::chrono::seconds(120)));
    grpc::Status status;
    ASSERT_TRUE(pause.Arm(pause_point::kGenerateDecodeStep).ok());
    std::thread call([&] {
      auto reader = stub_->Generate(&ctx, Request({a.id}, max_tokens));
      GenerateResponse msg;
      while (reader->Read(&msg)) {
      }
      status = reader->Finish();
    });
    const absl::Status held =
        pause.HoldAtArmed(pause_point::kGenerateDecodeStep, 6, absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(held.ok()) << held;
    ctx.TryCancel();
    if (held.ok()) {
      const absl::Status seen =
          pause.WaitStopSeen(pause_point::kGenerateDecodeStep, absl::Now() + absl::Seconds(60));
      EXPECT_TRUE(seen.ok()) << seen;
      EXPECT_TRUE(pause.Release(pause_point::kGenerateDecodeStep).ok());
    }
    const int after = StepsUntilIdle(pause);
    call.join();
    EXPECT_EQ(status.error_code(), grpc::CANCELLED);
    EXPECT_EQ(after, 0);
    EXPECT_EQ(Metric("kvc_generated_tokens_total") - before, 5);
  }
  // The server is healthy afterwards.
  const Streamed ok = Call(Request({a.id}, 8));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
}

TEST_F(GeneratorServiceTest, CancelsAtEveryStageLeaveTheServerHealthy) {
  const StoredCache a = Store(kDocA);
  const StoredCache b = Store(kDocB);
  // Cancel right after sending, after each of the first few messages, and while queued behind a blocked
  // scheduler; then shut everything down with calls possibly still in flight.
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE(round);
    std::shared_ptr<absl::Notification> release;
    if (round % 4 == 3) release = BlockScheduler();
    grpc::ClientContext ctx;
    ctx.set_deadline(In(std::chrono::seconds(60)));
    auto reader = stub_->Generate(&ctx, Request({a.id, b.id}, 200));
    GenerateResponse msg;
    for (int i = 0; i < round % 4 && round % 4 != 3; ++i) {
      if (!reader->Read(&msg)) break;
    }
    if (release != nullptr) WaitQueued(1);
    ctx.TryCancel();
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
    if (release != nullptr) release->Notify();
  }
  const Streamed ok = Call(Request({a.id, b.id}, 8));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();

  // Shutting down with a call mid-decode: the service waits for its work and nothing leaks or hangs.
  grpc::ClientContext ctx;
  ctx.set_deadline(In(std::chrono::seconds(60)));
  auto reader = stub_->Generate(&ctx, Request({a.id}, Window() - 200));
  GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  StopServer(std::chrono::milliseconds(0));
  bool usage = false;
  while (reader->Read(&msg)) usage = usage || msg.has_usage();
  EXPECT_FALSE(usage);
  EXPECT_FALSE(reader->Finish().ok());
}

TEST_F(GeneratorServiceTest, CreateRefusesMissingPartsAndBadOptions) {
  EXPECT_EQ(GeneratorServiceImpl::Create(nullptr, scheduler_.get(), store_.get(), nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GeneratorServiceImpl::Create(runtime_, nullptr, store_.get(), nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GeneratorServiceImpl::Create(runtime_, scheduler_.get(), nullptr, nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  GeneratorServiceOptions bad;
  bad.max_documents = 0;
  EXPECT_EQ(GeneratorServiceImpl::Create(runtime_, scheduler_.get(), store_.get(), nullptr, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Metrics are optional.
  EXPECT_TRUE(GeneratorServiceImpl::Create(runtime_, scheduler_.get(), store_.get(), nullptr, {}).ok());
}

TEST_F(GeneratorServiceTest, LoadCacheReportsPrefixAndComposeLoadedDropsLaterPrefixes) {
  const StoredCache a = Store(kDocA);
  const StoredCache b = Store(kDocB);
  auto la = LoadCache(*store_, *runtime_, a.id, "cache_ids[0]");
  ASSERT_TRUE(la.ok()) << la.status();
  EXPECT_EQ(la->id, a.id);
  EXPECT_EQ(la->prefix_tokens, a.prefix_tokens);
  EXPECT_EQ(la->stored_bytes, static_cast<int64_t>(a.bytes.size()));
  EXPECT_EQ(la->cache.model_fingerprint(), runtime_->fingerprint());
  EXPECT_EQ(la->cache.shape().dtype, runtime_->model().dtype());
  auto lb = LoadCache(*store_, *runtime_, b.id, "cache_ids[1]");
  ASSERT_TRUE(lb.ok()) << lb.status();
  const int64_t len_a = la->cache.length(), len_b = lb->cache.length();
  // The first entries of the second cache are its prefix, which the first cache already holds.
  torch::Tensor a_prefix_values = la->cache.Values(0).slice(1, 0, a.prefix_tokens).clone();
  std::vector<LoadedCache> both;
  both.push_back(std::move(*la));
  both.push_back(std::move(*lb));
  auto composed = ComposeLoaded(std::move(both), *runtime_);
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->length(), len_a + len_b - b.prefix_tokens);
  EXPECT_TRUE(torch::equal(composed->Values(0).slice(1, 0, a.prefix_tokens), a_prefix_values));

  EXPECT_EQ(LoadCache(*store_, *runtime_, "xyz", "cache_ids[3]").status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = LoadCache(*store_, *runtime_, std::string(64, '0'), "cache_ids[2]");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("cache_ids[2]"), std::string::npos);
  EXPECT_EQ(ComposeLoaded({}, *runtime_).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
