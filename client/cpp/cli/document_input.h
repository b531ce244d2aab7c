// Reading the documents a command sends: whole files (or stdin) as text documents, and the JSONL input of
// `kvc precompute`, one document per line:
//
//   {"id": "doc-17", "text": "The content ..."}
//   {"id": "doc-18", "token_ids": [1, 504, 3079]}
//
// "id" is optional (a string or a number; default: the 1-based line number) and is sent as Document.id,
// which caps it at 256 bytes. Exactly one of "text" and "token_ids" must be present; other keys are
// ignored, so retriever dumps with extra fields can be fed as they are. Blank lines are skipped.
//
// Errors are INVALID_ARGUMENT naming the source and line; the CLI reports them as usage errors.
// Thread safety: pure functions of their inputs.
#ifndef KVC_CLIENT_CPP_CLI_DOCUMENT_INPUT_H_
#define KVC_CLIENT_CPP_CLI_DOCUMENT_INPUT_H_

#include <iosfwd>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/kvc/v1/common.pb.h"

namespace kvc::cli {

// One text document per path, its whole content; "-" reads `stdin` (at most once). No paths: one
// document from `stdin`. NOT_FOUND or INVALID_ARGUMENT for a file that cannot be read.
absl::StatusOr<std::vector<kvc::v1::Document>> ReadTextDocuments(const std::vector<std::string>& paths,
                                                                 std::istream& stdin_stream);

struct JsonlDocument {
  std::string id;  // as given, or the line number
  int line = 0;    // 1-based
  kvc::v1::Document document;
};

// `source` names the input in messages ("docs.jsonl", "stdin").
absl::StatusOr<std::vector<JsonlDocument>> ParseDocumentsJsonl(std::istream& in, const std::string& source);

// Ids of the documents a results file (`kvc precompute --output`) already records: lines that parse as a
// JSON object with a string "id" and a string "cache_id". Other lines (a line cut short by a crash) are
// ignored. A file that does not exist records nothing.
absl::StatusOr<std::set<std::string>> ReadDoneIds(const std::string& path);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_DOCUMENT_INPUT_H_
