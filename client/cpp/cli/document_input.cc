#include "client/cpp/cli/document_input.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <istream>
#include <iterator>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kvc::cli {
namespace {

absl::Status CannotOpen(const std::string& path) {
  const int err = errno;
  const std::string message = absl::StrCat(path, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(message) : absl::InvalidArgumentError(message);
}

std::string ReadAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

absl::StatusOr<std::vector<kvc::v1::Document>> ReadTextDocuments(const std::vector<std::string>& paths,
                                                                 std::istream& stdin_stream) {
  std::vector<kvc::v1::Document> documents;
  if (paths.empty()) {
    documents.emplace_back().set_text(ReadAll(stdin_stream));
    return documents;
  }
  bool stdin_used = false;
  for (const std::string& path : paths) {
    kvc::v1::Document& document = documents.emplace_back();
    if (path == "-") {
      if (stdin_used) return absl::InvalidArgumentError("documents: \"-\" (stdin) given more than once");
      stdin_used = true;
      document.set_text(ReadAll(stdin_stream));
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return CannotOpen(path);
    document.set_text(ReadAll(in));
    // The server echoes Document.id in its logs; the file name is what a user recognizes.
    if (path.size() <= 256) document.set_id(path);
  }
  return documents;
}

absl::StatusOr<std::vector<JsonlDocument>> ParseDocumentsJsonl(std::istream& in, const std::string& source) {
  std::vector<JsonlDocument> documents;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const auto where = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", number, ": ", what));
    };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return where("not valid JSON");
    if (!j.is_object()) return where("expected a JSON object");
    JsonlDocument doc;
    doc.line = number;
    if (auto it = j.find("id"); it != j.end() && !it->is_null()) {
      if (it->is_string()) {
        doc.id = it->get<std::string>();
      } else if (it->is_number_integer()) {
        doc.id = it->dump();
      } else {
        return where("\"id\" must be a string or an integer");
      }
      if (doc.id.empty()) return where("\"id\" is empty");
      if (doc.id.size() > 256) return where("\"id\" is longer than 256 bytes");
    } else {
      doc.id = absl::StrCat(number);
    }
    const auto text = j.find("text");
    const auto ids = j.find("token_ids");
    const bool has_text = text != j.end();
    const bool has_ids = ids != j.end();
    if (has_text == has_ids) return where("exactly one of \"text\" and \"token_ids\" is required");
    if (has_text) {
      if (!text->is_string()) return where("\"text\" must be a string");
      doc.document.set_text(text->get<std::string>());
    } else {
      if (!ids->is_array()) return where("\"token_ids\" must be an array of integers");
      kvc::v1::TokenIds* out = doc.document.mutable_token_ids();
      for (const nlohmann::json& id : *ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
          return where("\"token_ids\" must hold integers in [0, 2^31)");
        }
        out->add_ids(static_cast<int32_t>(id.get<int64_t>()));
      }
    }
    doc.document.set_id(doc.id);
    documents.push_back(std::move(doc));
  }
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(source, ": read error"));
  return documents;
}

absl::StatusOr<std::set<std::string>> ReadDoneIds(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return done;
    return CannotOpen(path);
  }
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const auto id = j.find("id");
    const auto cache_id = j.find("cache_id");
    if (id != j.end() && id->is_string() && cache_id != j.end() && cache_id->is_string()) {
      done.insert(id->get<std::string>());
    }
  }
  return done;
}

}  // namespace kvc::cli
