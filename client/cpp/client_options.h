// Options of a KvcClient: where to connect, how to authenticate, and how long and how often to try a call.
//
// Thread safety: plain values; a client copies them at creation.
#ifndef KVC_CLIENT_CPP_CLIENT_OPTIONS_H_
#define KVC_CLIENT_CPP_CLIENT_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace kvc {

// Retries with exponential backoff and jitter. Only UNAVAILABLE is retried (the server is draining,
// restarting or unreachable, and nothing was done); every other code is the answer. A streaming call that
// has already delivered a message to the caller is never retried.
struct RetryPolicy {
  // Attempts in all, the first included: 1 turns retries off. Must be >= 1.
  int max_attempts = 4;
  // Wait before the first retry; each later wait is `multiplier` times the previous one, capped at
  // max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  // Each wait is scaled by a uniform factor in [1 - jitter, 1 + jitter], so that clients that failed
  // together do not retry together. In [0, 1].
  double jitter = 0.2;
};

struct ClientOptions {
  // gRPC target: "host:port", "dns:///host:port" (with client-side round-robin when the server's
  // Service is headless), "unix:/path", ...
  std::string target = "localhost:50051";

  // TLS. The channel uses TLS when use_tls is set or any of the files below is. With no root CA file,
  // the system's roots verify the server.
  bool use_tls = false;
  // PEM bundle of the CAs that sign the server's certificate.
  std::string tls_root_ca_file;
  // PEM certificate chain and private key of this client, for servers that require mutual TLS. Both or
  // neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Host name to verify the server's certificate against instead of the one in `target` (for servers
  // reached by address, or test certificates).
  std::string tls_server_name;

  // Sent as "authorization: Bearer <token>" on every call when not empty.
  std::string bearer_token;

  // Deadline of a call that gives none of its own (CallOptions::timeout), measured from the call's start
  // and covering every retry. absl::InfiniteDuration() for none.
  absl::Duration default_deadline = absl::Seconds(300);

  // Largest message the channel sends or receives, in bytes. Must be >= 1 MiB + a little, since cache
  // chunks are 1 MiB.
  int max_message_bytes = 64 << 20;

  // Bytes per data chunk of PutCache, 1 to 1 MiB (the wire limit).
  int put_chunk_bytes = 1 << 20;

  RetryPolicy retry;
};

// Per-call overrides.
struct CallOptions {
  // Deadline of this call measured from its start, retries included. Zero: ClientOptions::default_deadline.
  absl::Duration timeout = absl::ZeroDuration();
};

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_CLIENT_OPTIONS_H_
