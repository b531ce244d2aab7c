// `kvc cache ls|stat|get|put|rm|inspect`: the stored caches (CacheService) and local .kvc files.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <ostream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/request_flags.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/kvc_file_info.h"

namespace kvc::cli {
namespace {

bool LooksLikeCacheId(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return bytes;
}

// Written next to the destination and renamed over it, so the destination is never a partial .kvc.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(temp, ": cannot create"));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(temp.c_str());
      return absl::DataLossError(absl::StrCat(temp, ": write failed"));
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot rename ", temp, " to it"));
  }
  return absl::OkStatus();
}

void AddLs(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::string prefix;
    int limit = 0;
    int page_size = 0;
    std::string page_token;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = cache->add_subcommand("ls", "List stored caches");
  sub->footer(
      "One line per cache, in ascending id order: <cache_id>  <bytes>  <created>  <last_access>\n"
      "(times in UTC, RFC 3339). Follows the server's pages until --limit entries or the end; when it\n"
      "stops before the end, stderr gets \"next_page_token: <token>\" for --page-token.");
  sub->add_option("--prefix", flags->prefix, "Only ids starting with these hex characters")->type_name("HEX");
  sub->add_option("-n,--limit", flags->limit, "Print at most N entries (0: all)")
      ->type_name("N")
      ->check(Quiet(CLI::NonNegativeNumber));
  sub->add_option("--page-size", flags->page_size, "Entries per request (server default 100, at most 1000)")
      ->type_name("N")
      ->check(Quiet(CLI::NonNegativeNumber));
  sub->add_option("--page-token", flags->page_token, "Continue a listing where an earlier one stopped")
      ->type_name("TOKEN");
  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    kvc::v1::ListCachesRequest request;
    request.set_prefix(flags->prefix);
    request.set_page_size(flags->page_size);
    request.set_page_token(flags->page_token);
    nlohmann::json entries = nlohmann::json::array();
    int64_t printed = 0;
    std::string next;
    while (true) {
      // With a limit, no page asks for more than what is left, so a page always ends where the
      // listing stops and its token resumes exactly there.
      if (flags->limit > 0) {
        const int64_t per_page = flags->page_size > 0 ? flags->page_size : 100;
        request.set_page_size(static_cast<int32_t>(std::min<int64_t>(per_page, flags->limit - printed)));
      }
      absl::StatusOr<kvc::v1::ListCachesResponse> page = (*client)->ListCaches(request);
      if (!page.ok()) return ctx.Fail(page.status());
      for (const kvc::v1::CacheEntry& entry : page->entries()) {
        if (flags->limit > 0 && printed >= flags->limit) break;
        if (ctx.json()) {
          entries.push_back(CacheEntryJson(entry));
        } else {
          ctx.out() << CacheEntryLine(entry) << "\n";
        }
        ++printed;
      }
      if (page->next_page_token().empty()) break;
      if (flags->limit > 0 && printed >= flags->limit) {
        next = page->next_page_token();
        break;
      }
      request.set_page_token(page->next_page_token());
    }
    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"entries", entries}, {"next_page_token", next}}.dump() << std::endl;
    } else {
      ctx.out().flush();
      if (!next.empty()) ctx.err() << "next_page_token: " << next << std::endl;
    }
    return kExitOk;
  });
}

void AddStat(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::string id;
    bool info = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = cache->add_subcommand("stat", "Show a stored cache's size and times");
  sub->footer(
      "Prints cache_id, bytes, created and last_access from the store's metadata (not an access). With\n"
      "--info, also the .kvc header as `kvc cache inspect` prints it (reads the value; counts as an access).");
  sub->add_option("cache_id", flags->id, "The cache")->type_name("ID")->required();
  sub->add_flag("--info", flags->info, "Also read and print the .kvc header");
  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<kvc::v1::StatCacheResponse> stat = (*client)->StatCache(flags->id, flags->info);
    if (!stat.ok()) return ctx.Fail(stat.status());
    if (ctx.json()) {
      nlohmann::json j = {{"entry", CacheEntryJson(stat->entry())}};
      if (flags->info) j["info"] = CacheInfoJson(stat->info());
      ctx.out() << j.dump() << std::endl;
      return kExitOk;
    }
    ctx.out() << "cache_id: " << stat->entry().cache_id() << "\n"
              << "bytes: " << stat->entry().bytes() << "\n"
              << "created: " << TimestampText(stat->entry().created()) << "\n"
              << "last_access: " << TimestampText(stat->entry().last_access()) << "\n";
    if (flags->info) PrintCacheInfo(ctx.out(), stat->info(), /*with_id=*/false);
    ctx.out().flush();
    return kExitOk;
  });
}

void AddGet(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::string id;
    std::string output;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = cache->add_subcommand("get", "Download a stored cache to a .kvc file");
  sub->footer(
      "Streams the value, checks its length and SHA-256 against the server's header (DATA_LOSS on a\n"
      "mismatch) and writes it atomically (a temporary file renamed into place). Prints\n"
      "\"wrote <bytes> bytes to <file>\".");
  sub->add_option("cache_id", flags->id, "The cache")->type_name("ID")->required();
  sub->add_option("-o,--output", flags->output, "Destination; \"-\": stdout (default: <cache_id>.kvc)")
      ->type_name("FILE");
  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<FetchedCache> fetched = (*client)->GetCache(flags->id);
    if (!fetched.ok()) return ctx.Fail(fetched.status());
    if (flags->output == "-") {
      ctx.out().write(fetched->bytes.data(), static_cast<std::streamsize>(fetched->bytes.size()));
      ctx.out().flush();
      return kExitOk;
    }
    const std::string path = flags->output.empty() ? absl::StrCat(flags->id, ".kvc") : flags->output;
    absl::Status written = WriteFileAtomically(path, fetched->bytes);
    if (!written.ok()) return ctx.Fail(written);
    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"cache_id", flags->id},
                                  {"file", path},
                                  {"bytes", fetched->bytes.size()},
                                  {"sha256", absl::BytesToHexString(fetched->header.sha256())}}
                       .dump()
                << std::endl;
    } else {
      ctx.out() << "wrote " << fetched->bytes.size() << " bytes to " << path << std::endl;
    }
    return kExitOk;
  });
}

void AddPut(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::string file;
    std::string id;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = cache->add_subcommand("put", "Upload a .kvc file under a cache id");
  sub->footer(
      "Stores the file under the id, replacing any earlier value (e.g. to copy caches between stores).\n"
      "The server checks the digest and the .kvc structure. Prints the id, whether a value was replaced,\n"
      "and the header.");
  sub->add_option("file", flags->file, "The .kvc file")
      ->type_name("FILE")
      ->required()
      ->check(Quiet(CLI::ExistingFile));
  sub->add_option("--id", flags->id, "Cache id to store it under (64 lowercase hex characters)")
      ->type_name("ID")
      ->required();
  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<std::string> bytes = ReadWholeFile(flags->file);
    if (!bytes.ok()) return ctx.UsageError(std::string(bytes.status().message()));
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<kvc::v1::PutCacheResponse> put = (*client)->PutCache(flags->id, *bytes);
    if (!put.ok()) return ctx.Fail(put.status());
    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"cache_id", put->cache_id()},
                                  {"replaced", put->replaced()},
                                  {"info", CacheInfoJson(put->info())}}
                       .dump()
                << std::endl;
    } else {
      ctx.out() << "cache_id: " << put->cache_id() << "\n"
                << "replaced: " << (put->replaced() ? "true" : "false") << "\n";
      PrintCacheInfo(ctx.out(), put->info(), /*with_id=*/false);
      ctx.out().flush();
    }
    return kExitOk;
  });
}

void AddRm(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  auto ids = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = cache->add_subcommand("rm", "Delete stored caches");
  sub->footer(
      "Deletes each id and prints \"deleted <cache_id>\"; an id that fails prints an error line and the\n"
      "others are still deleted (exit status 1 if any failed).");
  sub->add_option("cache_ids", *ids, "The caches")->type_name("ID")->required();
  table.Add(sub, [&ctx, ids]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    int exit_code = kExitOk;
    nlohmann::json deleted = nlohmann::json::array();
    for (const std::string& id : *ids) {
      absl::Status status = (*client)->DeleteCache(id);
      if (!status.ok()) {
        exit_code = ctx.Fail(absl::Status(status.code(), absl::StrCat(id, ": ", status.message())));
        continue;
      }
      if (ctx.json()) {
        deleted.push_back(id);
      } else {
        ctx.out() << "deleted " << id << std::endl;
      }
    }
    if (ctx.json()) ctx.out() << nlohmann::json{{"deleted", deleted}}.dump() << std::endl;
    return exit_code;
  });
}

void AddInspect(CLI::App* cache, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::string target;
    bool verify = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = cache->add_subcommand("inspect", "Print the header of a .kvc file or a stored cache");
  sub->footer(
      "TARGET is a local .kvc file (read here, no server needed) or, when no such file exists, a stored\n"
      "cache id (its header read by the server). Prints model, fingerprint, method, budget, options,\n"
      "tokens in and out, compression, prefix tokens, next position, layers, kv_heads, head_dim, dtype,\n"
      "codec, bytes and format version, one \"key: value\" per line; a file's block starts with\n"
      "\"file: <path>\", a stored cache's with \"cache_id: <id>\".");
  sub->add_option("target", flags->target, "A .kvc file or a cache id")->type_name("FILE|ID")->required();
  sub->add_flag("--verify", flags->verify,
                "Also check every section's checksum (reads the whole value; downloads a stored one)");
  table.Add(sub, [&ctx, flags]() -> int {
    KvcFileInfoOptions options;
    options.verify_sections = flags->verify;
    const bool is_file = IsRegularFile(flags->target);
    absl::StatusOr<kvc::v1::CacheInfo> info;
    if (is_file) {
      absl::StatusOr<std::string> bytes = ReadWholeFile(flags->target);
      if (!bytes.ok()) return ctx.UsageError(std::string(bytes.status().message()));
      info = DescribeKvcBytes(*bytes, "", options);
    } else if (LooksLikeCacheId(flags->target)) {
      absl::StatusOr<KvcClient*> client = ctx.Client();
      if (!client.ok()) return ctx.Fail(client.status());
      if (flags->verify) {
        absl::StatusOr<FetchedCache> fetched = (*client)->GetCache(flags->target);
        info = fetched.ok() ? DescribeKvcBytes(fetched->bytes, flags->target, options)
                            : absl::StatusOr<kvc::v1::CacheInfo>(fetched.status());
      } else {
        absl::StatusOr<kvc::v1::StatCacheResponse> stat = (*client)->StatCache(flags->target, true);
        info = stat.ok() ? absl::StatusOr<kvc::v1::CacheInfo>(stat->info())
                         : absl::StatusOr<kvc::v1::CacheInfo>(stat.status());
      }
    } else {
      return ctx.UsageError(absl::StrCat(flags->target, ": no such file, and not a cache id (64 lowercase hex)"));
    }
    if (!info.ok()) return ctx.Fail(info.status());
    if (ctx.json()) {
      nlohmann::json j = CacheInfoJson(*info);
      if (is_file) j["file"] = flags->target;
      ctx.out() << j.dump() << std::endl;
    } else {
      if (is_file) ctx.out() << "file: " << flags->target << "\n";
      PrintCacheInfo(ctx.out(), *info, /*with_id=*/!is_file);
      ctx.out().flush();
    }
    return kExitOk;
  });
}

}  // namespace

void AddCacheCommands(CLI::App& root, CliContext& ctx, CommandTable& table) {
  CLI::App* cache = root.add_subcommand("cache", "List, inspect, download, upload and delete stored caches");
  cache->require_subcommand(1);
  AddLs(cache, ctx, table);
  AddStat(cache, ctx, table);
  AddGet(cache, ctx, table);
  AddPut(cache, ctx, table);
  AddRm(cache, ctx, table);
  AddInspect(cache, ctx, table);
  cache->footer(
      "Subcommands on the cache role (kvc.v1.CacheService) and on local .kvc files."
      "\n\n"
      "Examples:\n"
      "  kvc cache ls --limit 20\n"
      "  kvc cache inspect 3f2a...e9          (a stored cache)\n"
      "  kvc cache get 3f2a...e9 -o answer.kvc && kvc cache inspect answer.kvc --verify\n"
      "  kvc cache rm 3f2a...e9");
}

}  // namespace kvc::cli
