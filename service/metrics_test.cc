// Every metric of DESIGN §8 is exposed, with the values recorded, over HTTP on its own port.
#include "service/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

std::string Scrape(prometheus::Registry& r) { return prometheus::TextSerializer().Serialize(r.Collect()); }

// A plain HTTP/1.0 GET, enough for the exposer.
std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  const std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  (void)!::write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(MetricsTest, RecordsEveryDesignMetric) {
  prometheus::Registry registry;
  ServiceMetrics m(registry);
  m.RecordRequest("Compress", "OK", 0.2);
  m.RecordRequest("Compress", "INVALID_ARGUMENT", 0.001);
  m.RecordQueueSeconds(0.05);
  m.RecordPhase("compress", "prefill", 0.15);
  m.RecordCompression(4000, 500);
  m.RecordCacheLookup(true);
  m.RecordCacheLookup(false);
  m.RecordCacheLookup(false);
  m.RecordStore("put", "file", 1000, 0.01);
  m.InitStoreErrors("get", "file");
  m.InitStoreErrors("put", "redis");
  m.RecordStoreError("put", "redis");
  m.InitEvictions("file");
  m.RecordEviction("file", 700);
  m.RecordGeneration(32, 0.3);
  m.SetDeviceMemoryBytes(1e9);
  m.SetModelInfo("SmolLM2", "ab12", "cpu", "float32");
  {
    auto guard = m.Inflight();
    EXPECT_TRUE(absl::StrContains(Scrape(registry), "kvc_inflight_requests 1"));
  }
  const std::string text = Scrape(registry);
  for (const char* line : {
           "kvc_requests_total{code=\"OK\",rpc=\"Compress\"} 1",
           "kvc_requests_total{code=\"INVALID_ARGUMENT\",rpc=\"Compress\"} 1",
           "kvc_request_seconds_count{rpc=\"Compress\"} 2",
           "kvc_queue_seconds_count 1",
           "kvc_phase_seconds_count{phase=\"prefill\",work=\"compress\"} 1",
           "kvc_prefill_tokens_total 4000",
           "kvc_kept_tokens_total 500",
           "kvc_compression_ratio_sum 8",
           "kvc_cache_hits_total 1",
           "kvc_cache_misses_total 2",
           "kvc_store_bytes{op=\"put\"} 1000",
           "kvc_store_seconds_count{backend=\"file\",op=\"put\"} 1",
           "kvc_store_errors_total{backend=\"file\",op=\"get\"} 0",
           "kvc_store_errors_total{backend=\"redis\",op=\"put\"} 1",
           "kvc_store_evictions_total{backend=\"file\"} 1",
           "kvc_store_evicted_bytes_total{backend=\"file\"} 700",
           "kvc_inflight_requests 0",
           "kvc_generated_tokens_total 32",
           "kvc_time_to_first_token_seconds_count 1",
           "kvc_device_memory_bytes 1000000000",
           "kvc_model_info{device=\"cpu\",dtype=\"float32\",fingerprint=\"ab12\",model=\"SmolLM2\"} 1",
       }) {
    EXPECT_TRUE(absl::StrContains(text, line)) << "missing: " << line << "\n" << text;
  }
}

TEST(MetricsTest, ServedOverHttpOnItsOwnPort) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServiceMetrics m(*registry);
  m.RecordCacheLookup(true);
  auto exposer = StartMetricsExposer("127.0.0.1:0", registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  const int port = (*exposer)->GetListeningPorts().at(0);
  const std::string body = HttpGet(port, "/metrics");
  EXPECT_TRUE(absl::StrContains(body, "200 OK")) << body;
  EXPECT_TRUE(absl::StrContains(body, "kvc_cache_hits_total 1")) << body;

  // The same port twice cannot bind; a malformed address is refused before binding.
  auto second = StartMetricsExposer(absl::StrCat("127.0.0.1:", port), registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_EQ(StartMetricsExposer("nonsense", registry).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
