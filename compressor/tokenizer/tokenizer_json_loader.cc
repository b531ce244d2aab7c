// BpeTokenizer::FromTokenizerJson: Hugging Face tokenizer.json (+ tokenizer_config.json) -> BpeTokenizerSpec.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "compressor/tokenizer/bpe_tokenizer.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

absl::StatusOr<json> ReadJson(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not valid JSON"));
  return j;
}

absl::Status Unsupported(const std::string& what, const json& node) {
  return absl::UnimplementedError(absl::StrCat("tokenizer.json: unsupported ", what, ": ", node.dump().substr(0, 200)));
}

std::string TypeOf(const json& node) {
  return node.is_object() && node.contains("type") && node["type"].is_string() ? node["type"].get<std::string>() : "";
}

absl::StatusOr<SplitBehavior> ParseBehavior(const json& node) {
  std::string b = node.is_string() ? node.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return Unsupported("split behavior", node);
}

std::string QuoteLiteral(const std::string& s) {
  std::string out = "\\Q";
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out + "\\E";
}

absl::Status AddPreTokenizer(const json& node, bool first, BpeTokenizerSpec* spec) {
  std::string type = TypeOf(node);
  if (type == "Sequence") {
    if (!node.contains("pretokenizers") || !node["pretokenizers"].is_array()) return Unsupported("pre_tokenizer", node);
    bool is_first = first;
    for (const json& child : node["pretokenizers"]) {
      KVC_RETURN_IF_ERROR(AddPreTokenizer(child, is_first, spec));
      is_first = false;
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    if (node.value("add_prefix_space", false)) {
      // Only meaningful on the whole segment; a prefix added after an earlier split is not supported.
      if (!first) return Unsupported("ByteLevel add_prefix_space after another pre-tokenizer", node);
      spec->add_prefix_space = true;
    }
    if (node.value("use_regex", true)) {
      KVC_ASSIGN_OR_RETURN(auto step, MakeRegexSplit(kGpt2Pattern, SplitBehavior::kIsolated));
      spec->pre_tokenizer.Add(std::move(step));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    const json& pattern = node.contains("pattern") ? node["pattern"] : json();
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      regex = pattern["Regex"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      regex = QuoteLiteral(pattern["String"].get<std::string>());
    } else {
      return Unsupported("Split pattern", node);
    }
    KVC_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseBehavior(node.value("behavior", json("Isolated"))));
    KVC_ASSIGN_OR_RETURN(auto step, MakeRegexSplit(regex, behavior, node.value("invert", false)));
    spec->pre_tokenizer.Add(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Digits") {
    spec->pre_tokenizer.Add(MakeDigitsSplit(node.value("individual_digits", false)));
    return absl::OkStatus();
  }
  return Unsupported("pre_tokenizer", node);
}

absl::Status ParseNormalizer(const json& node, BpeTokenizerSpec* spec) {
  if (node.is_null()) return absl::OkStatus();
  std::string type = TypeOf(node);
  if (type == "NFC") {
    spec->nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    for (const json& child : node["normalizers"]) KVC_RETURN_IF_ERROR(ParseNormalizer(child, spec));
    return absl::OkStatus();
  }
  return Unsupported("normalizer", node);
}

// tokenizer_config.json names tokens either as a string or as {"content": ...}.
std::optional<std::string> TokenName(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromTokenizerJson(const std::string& path) {
  KVC_ASSIGN_OR_RETURN(json j, ReadJson(path));
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has no model object"));
  }
  const json& model = j["model"];
  if (TypeOf(model) != "BPE") return Unsupported("model type", json(TypeOf(model)));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return Unsupported(key, model[key]);
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model.vocab must be an object"));
  }
  BpeTokenizerSpec spec;
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad id for token ", token));
    }
    size_t i = id.get<size_t>();
    if (spec.vocab.size() <= i) spec.vocab.resize(i + 1);
    spec.vocab[i] = token;
  }
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const json& m : model["merges"]) {
      if (m.is_string()) {  // legacy "a b" form
        std::string s = m.get<std::string>();
        size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) return absl::InvalidArgumentError(absl::StrCat(path, ": malformed merge '", s, "'"));
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return absl::InvalidArgumentError(absl::StrCat(path, ": malformed merge ", m.dump()));
      }
    }
  }
  spec.ignore_merges = model.value("ignore_merges", false);
  spec.byte_fallback = model.value("byte_fallback", false);
  KVC_RETURN_IF_ERROR(ParseNormalizer(j.value("normalizer", json()), &spec));
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    KVC_RETURN_IF_ERROR(AddPreTokenizer(j["pre_tokenizer"], true, &spec));
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string() ||
          !a["id"].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": malformed added token ", a.dump()));
      }
      AddedToken t;
      t.id = a["id"].get<int32_t>();
      t.content = a["content"].get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      spec.added_tokens.push_back(std::move(t));
    }
  }
  auto lookup = [&](const std::string& name) -> std::optional<int32_t> {
    for (const AddedToken& a : spec.added_tokens) if (a.content == name) return a.id;
    for (size_t i = 0; i < spec.vocab.size(); ++i) if (spec.vocab[i] == name) return static_cast<int32_t>(i);
    return std::nullopt;
  };
  if (model.contains("unk_token") && model["unk_token"].is_string()) spec.unk_id = lookup(model["unk_token"]);
  fs::path config_path = fs::path(path).parent_path() / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    KVC_ASSIGN_OR_RETURN(json config, ReadJson(config_path));
    if (config.contains("chat_template") && config["chat_template"].is_string()) {
      spec.chat_template = config["chat_template"].get<std::string>();
    }
    if (auto bos = TokenName(config, "bos_token")) spec.bos_id = lookup(*bos);
    if (auto eos = TokenName(config, "eos_token")) spec.eos_id = lookup(*eos);
  }
  return Create(std::move(spec));
}

}  // namespace kvc
