// `kvc precompute`: a JSONL file of documents in, one stored cache per document, resumable.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <ostream>
#include <set>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/document_input.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/progress_bar.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {
namespace {

struct PrecomputeFlags {
  std::string input = "-";
  std::string mode;
  SpecFlags spec;
  int concurrency = 4;
  int batch_size = 1;
  std::string output;
  bool no_progress = false;
  int max_errors = 10;
};

// Codes that say every later request would fail the same way: stop sending instead of repeating them.
bool StopsTheRun(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:  // usually one document's content
    case absl::StatusCode::kOutOfRange:       // one document too long
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
      return false;
    default:
      return true;
  }
}

bool HasSpecFlags(const SpecFlags& spec) {
  return !spec.method.empty() || spec.ratio_option->count() > 0 || spec.target_option->count() > 0 ||
         !spec.options.empty();
}

kvc::v1::PrecomputeRequest BaseRequest(const PrecomputeFlags& flags) {
  kvc::v1::PrecomputeRequest request;
  request.set_mode(flags.mode == "full" ? kvc::v1::PRECOMPUTE_MODE_FULL : kvc::v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  // FULL takes no spec; one is sent only when asked for, so that the server's check applies to it.
  if (flags.mode != "full" || HasSpecFlags(flags.spec)) *request.mutable_spec() = flags.spec.Spec();
  if (flags.spec.has_system_prompt()) request.set_system_prompt(flags.spec.system_prompt);
  if (!flags.spec.model.empty()) request.set_model(flags.spec.model);
  request.set_cache_dtype(flags.spec.Dtype());
  request.set_cache_codec(flags.spec.Codec());
  return request;
}

int RunPrecompute(CliContext& ctx, const PrecomputeFlags& flags) {
  // Input.
  std::ifstream file;
  if (flags.input != "-") {
    file.open(flags.input);
    if (!file) return ctx.UsageError(absl::StrCat(flags.input, ": cannot open"));
  }
  std::istream& in = flags.input == "-" ? ctx.in() : file;
  absl::StatusOr<std::vector<JsonlDocument>> documents =
      ParseDocumentsJsonl(in, flags.input == "-" ? "stdin" : flags.input);
  if (!documents.ok()) return ctx.UsageError(std::string(documents.status().message()));

  // Resume: documents the results file already records are not sent again.
  std::set<std::string> done;
  if (!flags.output.empty()) {
    absl::StatusOr<std::set<std::string>> recorded = ReadDoneIds(flags.output);
    if (!recorded.ok()) return ctx.UsageError(std::string(recorded.status().message()));
    done = std::move(*recorded);
  }
  std::vector<const JsonlDocument*> pending;
  for (const JsonlDocument& doc : *documents) {
    if (done.count(doc.id) == 0) pending.push_back(&doc);
  }
  const int64_t skipped = static_cast<int64_t>(documents->size() - pending.size());

  std::ofstream results_file;
  if (!flags.output.empty()) {
    results_file.open(flags.output, std::ios::app);
    if (!results_file) return ctx.UsageError(absl::StrCat(flags.output, ": cannot open for appending"));
  }
  std::ostream& results = flags.output.empty() ? ctx.out() : results_file;

  absl::StatusOr<KvcClient*> client = ctx.Client();
  if (!client.ok()) return ctx.Fail(client.status());

  const size_t batch_size = static_cast<size_t>(flags.batch_size);
  const size_t batches = (pending.size() + batch_size - 1) / batch_size;
  const kvc::v1::PrecomputeRequest base = BaseRequest(flags);
  const bool interactive = isatty(STDERR_FILENO) != 0;
  std::unique_ptr<ProgressBar> progress;
  if (!flags.no_progress && !pending.empty()) {
    ProgressBarOptions progress_options;
    progress_options.interactive = interactive;
    progress = std::make_unique<ProgressBar>(static_cast<int64_t>(pending.size()), &ctx.err(),
                                             &ctx.output_mutex(), progress_options);
  }

  std::atomic<size_t> next_batch{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> computed{0}, hits{0}, failed{0};
  std::atomic<int> errors{0};
  const absl::Time start = absl::Now();

  const auto worker = [&]() {
    for (size_t b = next_batch++; b < batches && !stop.load(); b = next_batch++) {
      const size_t begin = b * batch_size;
      const size_t end = std::min(pending.size(), begin + batch_size);
      kvc::v1::PrecomputeRequest request = base;
      std::vector<std::string> ids;
      for (size_t i = begin; i < end; ++i) {
        *request.add_documents() = pending[i]->document;
        ids.push_back(pending[i]->id);
      }
      absl::StatusOr<kvc::v1::PrecomputeResponse> response = (*client)->Precompute(request);
      const int64_t n = static_cast<int64_t>(end - begin);
      if (response.ok() && response->results_size() != static_cast<int>(n)) {
        response = absl::InternalError(absl::StrCat("Compressor.Precompute: ", response->results_size(),
                                                    " results for ", n, " documents"));
      }
      if (response.ok()) {
        std::string lines;
        for (int i = 0; i < response->results_size(); ++i) {
          const kvc::v1::PrecomputeResult& r = response->results(i);
          (r.cache_hit() ? hits : computed)++;
          lines += nlohmann::json{{"id", ids[i]},
                                  {"cache_id", r.cache_id()},
                                  {"cache_hit", r.cache_hit()},
                                  {"tokens_in", r.info().tokens_in()},
                                  {"tokens_out", r.info().tokens_out()},
                                  {"bytes", r.info().bytes()}}
                       .dump();
          lines += "\n";
        }
        absl::MutexLock lock(&ctx.output_mutex());
        // Flushed per batch: a run that is killed loses at most the batches in flight.
        results << lines << std::flush;
      } else {
        failed += n;
        const int error_count = ++errors;
        if (StopsTheRun(response.status().code()) || (flags.max_errors > 0 && error_count >= flags.max_errors)) {
          stop = true;
        }
        absl::MutexLock lock(&ctx.output_mutex());
        ctx.err() << (progress != nullptr && interactive ? "\n" : "") << "error: documents "
                  << absl::StrJoin(ids, ",") << ": " << absl::StatusCodeToString(response.status().code())
                  << ": " << response.status().message() << std::endl;
      }
      if (progress != nullptr) progress->Advance(n);
    }
  };
  std::vector<std::thread> threads;
  const size_t workers = std::min<size_t>(static_cast<size_t>(flags.concurrency), batches);
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  if (progress != nullptr) progress->Finish();

  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t attempted = computed + hits + failed;
  const int64_t not_attempted = static_cast<int64_t>(pending.size()) - attempted;
  const double rate = seconds > 0 ? static_cast<double>(attempted) / seconds : 0.0;
  {
    absl::MutexLock lock(&ctx.output_mutex());
    if (ctx.json()) {
      ctx.err() << nlohmann::json{{"documents", documents->size()},
                                  {"computed", computed.load()},
                                  {"hits", hits.load()},
                                  {"skipped", skipped},
                                  {"failed", failed.load()},
                                  {"not_attempted", not_attempted},
                                  {"seconds", seconds},
                                  {"documents_per_second", rate}}
                       .dump()
                << std::endl;
    } else {
      ctx.err() << absl::StrFormat(
                       "precompute: %d documents: %d computed, %d hits, %d skipped (already in the results "
                       "file), %d failed, %d not attempted; %.3fs, %.2f doc/s",
                       documents->size(), computed.load(), hits.load(), skipped, failed.load(), not_attempted,
                       seconds, rate)
                << std::endl;
    }
  }
  return failed > 0 || not_attempted > 0 ? kExitError : kExitOk;
}

}  // namespace

void AddPrecomputeCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  auto flags = std::make_shared<PrecomputeFlags>();
  CLI::App* sub = root.add_subcommand("precompute", "Store a reusable cache for each document of a JSONL file");
  sub->add_option("input", flags->input, "JSONL file of documents; \"-\" (default): stdin")
      ->type_name("FILE")
      ->check(Quiet(CLI::ExistingFile | CLI::IsMember({"-"})));
  sub->add_option("--mode", flags->mode, "What to store per document")
      ->type_name("full|query-agnostic")
      ->required()
      ->check(Quiet(CLI::IsMember({"full", "query-agnostic"})));
  flags->spec.Register(sub,
                       "query-agnostic: the method (novelty, recall, knorm, streaming_llm, random, truncate, snapkv, "
                       "none); full: leave unset");
  sub->add_option("-j,--concurrency", flags->concurrency, "Requests in flight at once, 1 to 256")
      ->type_name("N")
      ->capture_default_str()
      ->check(Quiet(CLI::Range(1, 256)));
  sub->add_option("--batch-size", flags->batch_size, "Documents per request, 1 to 1024")
      ->type_name("N")
      ->capture_default_str()
      ->check(Quiet(CLI::Range(1, 1024)));
  sub->add_option("-o,--output", flags->output,
                  "Results file (JSONL, appended); ids it lists are skipped, which makes reruns resume")
      ->type_name("FILE");
  sub->add_flag("--no-progress", flags->no_progress, "No progress bar");
  sub->add_option("--max-errors", flags->max_errors,
                  "Stop sending after this many failed requests (0: never); errors that every request would "
                  "hit (UNAUTHENTICATED, UNAVAILABLE, FAILED_PRECONDITION, ...) stop at once")
      ->type_name("N")
      ->capture_default_str()
      ->check(Quiet(CLI::NonNegativeNumber));
  sub->footer(
      "Reads one document per line, {\"id\": ..., \"text\": ...} or {\"id\": ..., \"token_ids\": [...]}, and\n"
      "stores a cache per document, no query involved:\n"
      "  --mode full            the full KV; a later `kvc compress --document-cache-id` selects from it with\n"
      "                         the query, without a second prefill\n"
      "  --mode query-agnostic  compressed with a method that needs no query (novelty, recall, knorm,\n"
      "                         streaming_llm, random, truncate, snapkv with a fixed window, none), ready for\n"
      "                         `kvc generate`\n"
      "One JSON line per document ({\"id\", \"cache_id\", \"cache_hit\", \"tokens_in\", \"tokens_out\",\n"
      "\"bytes\"}) goes to --output (appended) or stdout. A progress bar with the rate and ETA and a final\n"
      "summary go to stderr.\n"
      "Resumable: documents whose id --output already lists are skipped without a request, and the server\n"
      "answers documents whose cache is already stored as hits, with no compute. Rerun the same command\n"
      "after an interruption."
      "\n\n"
      "Exit status: 0 when every document has a cache, 1 when some failed or were not attempted.\n"
      "Examples:\n"
      "  kvc precompute corpus.jsonl --mode full --concurrency 8 --output corpus.caches.jsonl\n"
      "  kvc precompute corpus.jsonl --mode query-agnostic --method knorm --ratio 4 -o knorm4.jsonl");

  table.Add(sub, [&ctx, flags]() { return RunPrecompute(ctx, *flags); });
}

}  // namespace kvc::cli
