#include "service/store/redis_store.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <utility>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "compressor/util/status_macros.h"
#include "service/store/list_request.h"

namespace kvc {
namespace {

constexpr char kManifestPrefix[] = "kvc:m:{";
constexpr char kPartPrefix[] = "kvc:p:{";
constexpr int64_t kMaxPartBytes = int64_t{512} << 20;  // Redis's default proto-max-bulk-len
constexpr int kGetWindow = 16;                         // part GETs in flight per round trip
constexpr int kGetAttempts = 16;                       // manifest re-reads while overwrites race a Get

// KEYS[1] manifest; ARGV: part key base, gen, size, parts, part_size, now_us, ttl_ms.
// Runs inside the Put's MULTI after the new parts are SET, so the swap and the old parts' removal are
// atomic with them.
constexpr char kCommitScript[] = R"lua(
local old = redis.call('HMGET', KEYS[1], 'gen', 'parts')
if old[1] and old[1] ~= ARGV[2] then
  for i = 0, (tonumber(old[2]) or 0) - 1 do redis.call('DEL', ARGV[1] .. old[1] .. ':' .. i) end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'size', ARGV[3], 'parts', ARGV[4], 'part_size', ARGV[5],
           'created', ARGV[6], 'last_access', ARGV[6])
if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
return 1
)lua";

// KEYS[1] manifest; ARGV: now_us. Returns {gen, size, parts} or nil. Writes last_access at most once a
// second per entry.
constexpr char kTouchScript[] = R"lua(
local m = redis.call('HMGET', KEYS[1], 'gen', 'size', 'parts', 'last_access')
if not m[1] then return false end
if tonumber(ARGV[1]) - (tonumber(m[4]) or 0) >= 1000000 then
  redis.call('HSET', KEYS[1], 'last_access', ARGV[1])
end
return {m[1], m[2], m[3]}
)lua";

// KEYS[1] manifest; ARGV: part key base, expected gen ('' = any). Returns 1 if it deleted the entry.
constexpr char kDeleteScript[] = R"lua(
local m = redis.call('HMGET', KEYS[1], 'gen', 'parts')
if not m[1] then return 0 end
if ARGV[2] ~= '' and m[1] ~= ARGV[2] then return 0 end
for i = 0, (tonumber(m[2]) or 0) - 1 do redis.call('DEL', ARGV[1] .. m[1] .. ':' .. i) end
redis.call('DEL', KEYS[1])
return 1
)lua";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string ManifestKey(const std::string& id) { return absl::StrCat(kManifestPrefix, id, "}"); }
std::string PartBase(const std::string& id) { return absl::StrCat(kPartPrefix, id, "}:"); }

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string NewGeneration() {
  thread_local absl::BitGen bitgen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(bitgen));
}

// A write to a socket the server has closed raises SIGPIPE, which would kill the process. Blocking it
// in this thread for the duration of a call (and consuming one it raised) leaves the process-wide
// disposition, which is not the store's to change, alone.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~ScopedSigpipeBlock() {
    int saved_errno = errno;
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved_errno;
  }

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

absl::Status ErrorReplyStatus(const std::string& where, const char* what, absl::string_view error) {
  std::string msg = absl::StrCat(where, ": ", what, ": ", error);
  if (absl::StartsWith(error, "OOM")) return absl::ResourceExhaustedError(msg);
  for (const char* code : {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN"}) {
    if (absl::StartsWith(error, code)) return absl::UnavailableError(msg);
  }
  for (const char* code : {"NOAUTH", "WRONGPASS", "NOPERM", "ERR invalid password", "ERR AUTH"}) {
    if (absl::StartsWith(error, code)) return absl::FailedPreconditionError(msg);
  }
  return absl::InternalError(msg);
}

absl::StatusOr<int64_t> ParseIntField(const redisReply* r, const std::string& where, const char* field) {
  int64_t v = 0;
  if (r == nullptr || r->type != REDIS_REPLY_STRING ||
      !absl::SimpleAtoi(absl::string_view(r->str, r->len), &v)) {
    return absl::DataLossError(
        absl::StrCat(where, ": manifest field ", field, " is missing or not a number"));
  }
  return v;
}

std::string PercentDecode(absl::string_view s, bool* ok) {
  auto nibble = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10; };
  std::string out;
  *ok = true;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size() || !absl::ascii_isxdigit(s[i + 1]) || !absl::ascii_isxdigit(s[i + 2])) {
      *ok = false;
      return "";
    }
    out.push_back(static_cast<char>(nibble(s[i + 1]) * 16 + nibble(s[i + 2])));
    i += 2;
  }
  return out;
}

}  // namespace

// One hiredis connection. Not thread-safe: used by one borrower at a time.
class RedisStore::Connection {
 public:
  explicit Connection(redisContext* ctx) : ctx_(ctx) {}
  ~Connection() { redisFree(ctx_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // True once the socket failed; the connection is then dropped instead of going back to the pool.
  bool broken() const { return ctx_->err != 0; }
  bool timed_out() const { return timed_out_; }

  // Queues one command and writes it out, so a large value goes to the socket before the next is
  // formatted (hiredis would otherwise hold a whole multi-part Put in its output buffer).
  absl::Status Send(const std::vector<absl::string_view>& args, const std::string& where, const char* what) {
    std::vector<const char*> argv(args.size());
    std::vector<size_t> argvlen(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      argv[i] = args[i].data();
      argvlen[i] = args[i].size();
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), argvlen.data()) !=
        REDIS_OK) {
      return Failure(where, what);
    }
    int done = 0;
    while (!done) {
      if (redisBufferWrite(ctx_, &done) != REDIS_OK) return Failure(where, what);
    }
    return absl::OkStatus();
  }

  // The next reply. Connection failures are UNAVAILABLE; error replies are returned as replies.
  absl::StatusOr<Reply> Receive(const std::string& where, const char* what) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) return Failure(where, what);
    return Reply(static_cast<redisReply*>(raw));
  }

  // One command, one reply; an error reply becomes a status.
  absl::StatusOr<Reply> Call(const std::vector<absl::string_view>& args, const std::string& where,
                             const char* what) {
    KVC_RETURN_IF_ERROR(Send(args, where, what));
    KVC_ASSIGN_OR_RETURN(Reply reply, Receive(where, what));
    if (reply->type == REDIS_REPLY_ERROR) {
      return ErrorReplyStatus(where, what, absl::string_view(reply->str, reply->len));
    }
    return reply;
  }

 private:
  absl::Status Failure(const std::string& where, const char* what) {
    // hiredis reports a socket timeout (SO_RCVTIMEO / SO_SNDTIMEO) as an I/O error with errno EAGAIN.
    if (ctx_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      timed_out_ = true;
      return absl::UnavailableError(absl::StrCat(where, ": ", what, ": timed out"));
    }
    if (ctx_->err == 0) ctx_->err = REDIS_ERR_OTHER;  // e.g. out of memory formatting; do not reuse
    return absl::UnavailableError(
        absl::StrCat(where, ": ", what, ": ", ctx_->errstr[0] ? ctx_->errstr : "connection failed"));
  }

  redisContext* ctx_;
  bool timed_out_ = false;
};

absl::StatusOr<RedisAddress> ParseRedisUri(const std::string& uri) {
  constexpr absl::string_view kScheme = "redis://";
  if (!absl::StartsWith(uri, kScheme)) {
    return absl::InvalidArgumentError(absl::StrCat("redis URI \"", uri, "\" does not start with redis://"));
  }
  auto bad = [&uri](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("redis URI \"", uri, "\": ", why));
  };
  absl::string_view rest = absl::string_view(uri).substr(kScheme.size());
  if (rest.find_first_of("?#") != absl::string_view::npos) return bad("query and fragment are not supported");
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash + 1);

  RedisAddress address;
  size_t at = authority.rfind('@');
  if (at != absl::string_view::npos) {
    absl::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return bad("credentials must be \":password@\" or \"user:password@\"");
    }
    bool ok_user = true, ok_pass = true;
    address.user = PercentDecode(userinfo.substr(0, colon), &ok_user);
    address.password = PercentDecode(userinfo.substr(colon + 1), &ok_pass);
    if (!ok_user || !ok_pass) return bad("bad percent-escape in the credentials");
    if (address.password.empty()) return bad("empty password");
  }

  absl::string_view port_text;
  if (absl::StartsWith(authority, "[")) {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unterminated [IPv6] host");
    address.host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected :port after the [IPv6] host");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    size_t colon = authority.find(':');
    address.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (address.host.empty()) return bad("no host");
  if (!port_text.empty()) {
    int port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
      return bad(absl::StrCat("port \"", port_text, "\" is not a number from 1 to 65535"));
    }
    address.port = port;
  }
  if (!path.empty()) {
    int db = 0;
    if (!absl::SimpleAtoi(path, &db) || db < 0) {
      return bad(absl::StrCat("database \"", path, "\" is not a non-negative number"));
    }
    address.db = db;
  }
  return address;
}

RedisStore::RedisStore(RedisAddress address, const StoreOptions& options)
    : address_(std::move(address)),
      where_(absl::StrCat("redis ", absl::StrContains(address_.host, ':') ? "[" : "", address_.host,
                          absl::StrContains(address_.host, ':') ? "]" : "", ":", address_.port)),
      options_(options) {}

RedisStore::~RedisStore() = default;

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Open(const std::string& uri,
                                                             const StoreOptions& options) {
  KVC_ASSIGN_OR_RETURN(RedisAddress address, ParseRedisUri(uri));
  if (options.redis_part_bytes < 1 || options.redis_part_bytes > kMaxPartBytes) {
    return absl::InvalidArgumentError(absl::StrCat("redis store: part size must be 1 to ", kMaxPartBytes,
                                                   " bytes, got ", options.redis_part_bytes));
  }
  if (options.redis_pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis store: pool size must be at least 1, got ", options.redis_pool_size));
  }
  if (options.ttl < absl::ZeroDuration()) return absl::InvalidArgumentError("redis store: negative ttl");
  if (options.connect_timeout <= absl::ZeroDuration() || options.io_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis store: timeouts must be positive");
  }
  std::unique_ptr<RedisStore> store(new RedisStore(std::move(address), options));
  // Fail at startup, not at the first request, when the address or credentials are wrong.
  bool fresh = false;
  ScopedSigpipeBlock sigpipe;
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection, store->Acquire(&fresh));
  // PING, because a server with requirepass accepts the connection and refuses only the first command.
  absl::Status ping = connection->Call({"PING"}, store->where_, "PING").status();
  store->Release(std::move(connection));
  KVC_RETURN_IF_ERROR(ping);
  return store;
}

absl::StatusOr<std::unique_ptr<RedisStore::Connection>> RedisStore::Connect() {
  redisContext* ctx = redisConnectWithTimeout(address_.host.c_str(), address_.port,
                                              absl::ToTimeval(options_.connect_timeout));
  if (ctx == nullptr)
    return absl::ResourceExhaustedError(absl::StrCat(where_, ": cannot allocate a connection"));
  if (ctx->err != 0) {
    std::string msg = absl::StrCat(where_, ": cannot connect: ", ctx->errstr);
    redisFree(ctx);
    return absl::UnavailableError(msg);
  }
  auto connection = std::make_unique<Connection>(ctx);
  if (redisSetTimeout(ctx, absl::ToTimeval(options_.io_timeout)) != REDIS_OK ||
      redisEnableKeepAlive(ctx) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat(where_, ": cannot set socket options: ", ctx->errstr));
  }
  if (!address_.password.empty()) {
    std::vector<absl::string_view> args = {"AUTH"};
    if (!address_.user.empty()) args.push_back(address_.user);
    args.push_back(address_.password);
    KVC_RETURN_IF_ERROR(connection->Call(args, where_, "AUTH").status());
  }
  if (address_.db != 0) {
    std::string db = absl::StrCat(address_.db);
    KVC_RETURN_IF_ERROR(connection->Call({"SELECT", db}, where_, "SELECT").status());
  }
  return connection;
}

absl::StatusOr<std::unique_ptr<RedisStore::Connection>> RedisStore::Acquire(bool* fresh) {
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.redis_pool_size;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      *fresh = false;
      return connection;
    }
    ++open_;
  }
  *fresh = true;
  auto connection = Connect();
  if (!connection.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
  }
  return connection;
}

void RedisStore::Release(std::unique_ptr<Connection> connection) {
  if (connection->broken()) {
    connection.reset();  // close outside the lock
    absl::MutexLock lock(&mu_);
    --open_;
    return;
  }
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(connection));
}

void RedisStore::DropIdle() {
  std::vector<std::unique_ptr<Connection>> dropped;
  absl::MutexLock lock(&mu_);
  open_ -= static_cast<int>(idle_.size());
  dropped.swap(idle_);
}  // closed after the lock is released: `dropped` is destroyed last

template <typename T, typename Op>
absl::StatusOr<T> RedisStore::Run(Op op) {
  ScopedSigpipeBlock sigpipe;
  absl::Status first;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool fresh = false;
    auto connection = Acquire(&fresh);
    if (!connection.ok()) {
      if (first.ok()) return connection.status();
      return absl::Status(
          connection.status().code(),
          absl::StrCat(connection.status().message(), " (retrying after: ", first.message(), ")"));
    }
    absl::StatusOr<T> result = op(**connection);
    bool broken = (*connection)->broken();
    bool timed_out = (*connection)->timed_out();
    Release(std::move(*connection));
    if (!broken || fresh || timed_out || attempt > 0) {
      if (!result.ok() && !first.ok()) {
        return absl::Status(result.status().code(), absl::StrCat(result.status().message(),
                                                                 " (retrying after: ", first.message(), ")"));
      }
      return result;
    }
    first = result.status();
    // A connection that died while idle usually means the server restarted: its idle siblings are dead
    // too, and the retry must not pick one of them.
    DropIdle();
  }
  return first;  // not reached: the second attempt always returns
}

absl::Status RedisStore::Put(const std::string& id, absl::string_view bytes) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const int64_t size = static_cast<int64_t>(bytes.size());
  const int64_t part_bytes = options_.redis_part_bytes;
  const int64_t parts = (size + part_bytes - 1) / part_bytes;
  const std::string manifest = ManifestKey(id);
  const std::string base = PartBase(id);
  const std::string ttl_ms = absl::StrCat(options_.ttl > absl::ZeroDuration()
                                              ? std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.ttl))
                                              : 0);
  auto op = [&](Connection& c) -> absl::StatusOr<bool> {
    // A fresh generation per attempt: a retried Put never shares part keys with a half-sent one.
    const std::string gen = NewGeneration();
    const std::string now = absl::StrCat(NowMicros());
    KVC_RETURN_IF_ERROR(c.Send({"MULTI"}, where_, "PUT"));
    for (int64_t i = 0; i < parts; ++i) {
      std::string key = absl::StrCat(base, gen, ":", i);
      absl::string_view part =
          bytes.substr(static_cast<size_t>(i * part_bytes), static_cast<size_t>(part_bytes));
      if (ttl_ms != "0") {
        KVC_RETURN_IF_ERROR(c.Send({"SET", key, part, "PX", ttl_ms}, where_, "PUT"));
      } else {
        KVC_RETURN_IF_ERROR(c.Send({"SET", key, part}, where_, "PUT"));
      }
    }
    const std::string size_text = absl::StrCat(size), parts_text = absl::StrCat(parts),
                      part_bytes_text = absl::StrCat(part_bytes);
    KVC_RETURN_IF_ERROR(c.Send({"EVAL", kCommitScript, "1", manifest, base, gen, size_text, parts_text,
                                part_bytes_text, now, ttl_ms},
                               where_, "PUT"));
    KVC_RETURN_IF_ERROR(c.Send({"EXEC"}, where_, "PUT"));

    // Every reply is read even after an error, so that the connection stays in step for its next user.
    absl::Status queued;
    for (int64_t i = 0; i < parts + 2; ++i) {
      KVC_ASSIGN_OR_RETURN(Reply reply, c.Receive(where_, "PUT"));
      if (reply->type == REDIS_REPLY_ERROR && queued.ok()) {
        queued = ErrorReplyStatus(where_, "PUT", absl::string_view(reply->str, reply->len));
      }
    }
    KVC_ASSIGN_OR_RETURN(Reply exec, c.Receive(where_, "PUT"));
    if (!queued.ok()) return queued;  // EXEC answered EXECABORT: nothing was applied
    if (exec->type == REDIS_REPLY_ERROR) {
      return ErrorReplyStatus(where_, "PUT", absl::string_view(exec->str, exec->len));
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != static_cast<size_t>(parts + 1)) {
      return absl::InternalError(absl::StrCat(where_, ": PUT: unexpected EXEC reply"));
    }
    const redisReply* commit = exec->element[parts];
    if (commit->type == REDIS_REPLY_ERROR) {
      // Redis does not roll back a transaction: the parts were written without a manifest. Remove them.
      absl::Status failed = ErrorReplyStatus(where_, "PUT", absl::string_view(commit->str, commit->len));
      for (int64_t i = 0; i < parts; ++i) {
        std::string key = absl::StrCat(base, gen, ":", i);
        c.Call({"DEL", key}, where_, "PUT cleanup").IgnoreError();
      }
      return failed;
    }
    for (int64_t i = 0; i < parts; ++i) {
      if (exec->element[i]->type == REDIS_REPLY_ERROR) {
        return ErrorReplyStatus(where_, "PUT",
                                absl::string_view(exec->element[i]->str, exec->element[i]->len));
      }
    }
    return true;
  };
  return Run<bool>(op).status();
}

absl::StatusOr<std::string> RedisStore::Get(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const std::string manifest = ManifestKey(id);
  const std::string base = PartBase(id);
  auto not_found = [&]() {
    return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in ", where_));
  };
  auto op = [&](Connection& c) -> absl::StatusOr<std::string> {
    std::string previous_gen;
    for (int attempt = 0; attempt < kGetAttempts; ++attempt) {
      const std::string now = absl::StrCat(NowMicros());
      KVC_ASSIGN_OR_RETURN(Reply head, c.Call({"EVAL", kTouchScript, "1", manifest, now}, where_, "GET"));
      if (head->type == REDIS_REPLY_NIL) return not_found();
      if (head->type != REDIS_REPLY_ARRAY || head->elements != 3 ||
          head->element[0]->type != REDIS_REPLY_STRING) {
        return absl::DataLossError(absl::StrCat(where_, ": manifest of ", id, " is malformed"));
      }
      const std::string gen(head->element[0]->str, head->element[0]->len);
      KVC_ASSIGN_OR_RETURN(int64_t size, ParseIntField(head->element[1], where_, "size"));
      KVC_ASSIGN_OR_RETURN(int64_t parts, ParseIntField(head->element[2], where_, "parts"));
      if (size < 0 || parts < 0) {
        return absl::DataLossError(absl::StrCat(where_, ": manifest of ", id, " has a negative size"));
      }

      std::string value;
      value.reserve(static_cast<size_t>(size));
      bool missing = false;
      for (int64_t first = 0; first < parts && !missing; first += kGetWindow) {
        const int64_t last = std::min(parts, first + kGetWindow);
        for (int64_t i = first; i < last; ++i) {
          std::string key = absl::StrCat(base, gen, ":", i);
          KVC_RETURN_IF_ERROR(c.Send({"GET", key}, where_, "GET"));
        }
        // The whole window is read even after a miss, so that the connection stays in step.
        absl::Status failed;
        for (int64_t i = first; i < last; ++i) {
          KVC_ASSIGN_OR_RETURN(Reply part, c.Receive(where_, "GET"));
          if (part->type == REDIS_REPLY_ERROR && failed.ok()) {
            failed = ErrorReplyStatus(where_, "GET", absl::string_view(part->str, part->len));
          }
          if (part->type != REDIS_REPLY_STRING) missing = true;
          if (!missing) value.append(part->str, part->len);
        }
        if (!failed.ok()) return failed;
      }
      if (!missing) {
        if (static_cast<int64_t>(value.size()) != size) {
          return absl::DataLossError(absl::StrCat(where_, ": ", id, " has ", value.size(),
                                                  " bytes in its parts but its manifest says ", size));
        }
        return value;
      }
      // The generation changed under us (an overwrite or delete won the race): read the manifest again.
      // The same generation missing parts twice was expired or evicted part by part: drop what is left.
      if (gen == previous_gen) {
        c.Call({"EVAL", kDeleteScript, "1", manifest, base, gen}, where_, "GET cleanup").IgnoreError();
        return absl::NotFoundError(
            absl::StrCat("cache entry ", id, " in ", where_, " lost parts (expired or evicted)"));
      }
      previous_gen = gen;
    }
    return absl::AbortedError(absl::StrCat(where_, ": GET ", id, ": the entry was overwritten ", kGetAttempts,
                                           " times while reading"));
  };
  return Run<std::string>(op);
}

absl::StatusOr<CacheEntryInfo> RedisStore::Stat(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const std::string manifest = ManifestKey(id);
  auto op = [&](Connection& c) -> absl::StatusOr<CacheEntryInfo> {
    KVC_ASSIGN_OR_RETURN(Reply r,
                         c.Call({"HMGET", manifest, "size", "created", "last_access"}, where_, "STAT"));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
      return absl::InternalError(absl::StrCat(where_, ": STAT: unexpected reply"));
    }
    if (r->element[0]->type == REDIS_REPLY_NIL) {
      return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in ", where_));
    }
    CacheEntryInfo info;
    info.id = id;
    KVC_ASSIGN_OR_RETURN(info.size_bytes, ParseIntField(r->element[0], where_, "size"));
    KVC_ASSIGN_OR_RETURN(int64_t created, ParseIntField(r->element[1], where_, "created"));
    KVC_ASSIGN_OR_RETURN(int64_t last_access, ParseIntField(r->element[2], where_, "last_access"));
    info.created = absl::FromUnixMicros(created);
    info.last_access = absl::FromUnixMicros(last_access);
    return info;
  };
  return Run<CacheEntryInfo>(op);
}

absl::Status RedisStore::Delete(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  const std::string manifest = ManifestKey(id);
  const std::string base = PartBase(id);
  auto op = [&](Connection& c) -> absl::StatusOr<bool> {
    KVC_ASSIGN_OR_RETURN(Reply r, c.Call({"EVAL", kDeleteScript, "1", manifest, base, ""}, where_, "DELETE"));
    return r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  };
  KVC_ASSIGN_OR_RETURN(bool deleted, Run<bool>(op));
  if (!deleted) return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in ", where_));
  return absl::OkStatus();
}

absl::StatusOr<ListPage> RedisStore::List(const std::string& prefix, int page_size,
                                          const std::string& page_token) {
  KVC_ASSIGN_OR_RETURN(store_internal::ListRequest request,
                       store_internal::ParseListRequest(prefix, page_size, page_token));
  const std::string pattern = absl::StrCat(kManifestPrefix, request.prefix, "*");
  auto op = [&](Connection& c) -> absl::StatusOr<ListPage> {
    // SCAN has no order, so a page needs every matching id; manifests are small and the scan is
    // incremental on the server, so this costs a round trip per 1000 keys, not a blocking KEYS.
    std::vector<std::string> ids;
    std::string cursor = "0";
    do {
      KVC_ASSIGN_OR_RETURN(Reply r,
                           c.Call({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, where_, "LIST"));
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
          r->element[1]->type != REDIS_REPLY_ARRAY) {
        return absl::InternalError(absl::StrCat(where_, ": LIST: unexpected SCAN reply"));
      }
      cursor.assign(r->element[0]->str, r->element[0]->len);
      const redisReply* keys = r->element[1];
      for (size_t i = 0; i < keys->elements; ++i) {
        absl::string_view key(keys->element[i]->str, keys->element[i]->len);
        if (!absl::ConsumePrefix(&key, kManifestPrefix) || !absl::ConsumeSuffix(&key, "}")) continue;
        if (!ValidateCacheId(key).ok() || !store_internal::ListMatches(request, key)) continue;
        ids.emplace_back(key.data(), key.size());
      }
    } while (cursor != "0");
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());  // SCAN may return a key twice

    ListPage page;
    size_t take = std::min(ids.size(), static_cast<size_t>(request.page_size));
    for (size_t i = 0; i < take; ++i) {
      std::string key = ManifestKey(ids[i]);
      KVC_RETURN_IF_ERROR(c.Send({"HMGET", key, "size", "created", "last_access"}, where_, "LIST"));
    }
    for (size_t i = 0; i < take; ++i) {
      KVC_ASSIGN_OR_RETURN(Reply r, c.Receive(where_, "LIST"));
      // An entry deleted or expired since the scan is simply not listed.
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING)
        continue;
      CacheEntryInfo info;
      info.id = ids[i];
      int64_t created = 0, last_access = 0;
      absl::SimpleAtoi(absl::string_view(r->element[0]->str, r->element[0]->len), &info.size_bytes);
      if (r->element[1]->type == REDIS_REPLY_STRING) {
        absl::SimpleAtoi(absl::string_view(r->element[1]->str, r->element[1]->len), &created);
      }
      if (r->element[2]->type == REDIS_REPLY_STRING) {
        absl::SimpleAtoi(absl::string_view(r->element[2]->str, r->element[2]->len), &last_access);
      }
      info.created = absl::FromUnixMicros(created);
      info.last_access = absl::FromUnixMicros(last_access);
      page.entries.push_back(std::move(info));
    }
    if (take < ids.size() && take > 0) page.next_page_token = ids[take - 1];
    return page;
  };
  return Run<ListPage>(op);
}

}  // namespace kvc
