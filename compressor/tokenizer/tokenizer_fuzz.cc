// libFuzzer target for Encode/Decode (build with -DKVC_FUZZ=ON and clang). Invariants checked on every input:
// no crash; invalid UTF-8 is rejected with INVALID_ARGUMENT; valid text round-trips through Decode; any id
// sequence decodes (or is rejected as out of range) to valid UTF-8; streaming equals one-shot decoding.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "compressor/model/default_model.h"
#include "compressor/tokenizer/incremental_detokenizer.h"
#include "compressor/tokenizer/tokenizer.h"
#include "compressor/tokenizer/utf8.h"

namespace {

const kvc::Tokenizer& GetTokenizer() {
  static const kvc::Tokenizer* tok = [] {
    const char* env = std::getenv("KVC_FUZZ_TOKENIZER");
    std::string path = env != nullptr ? env : kvc::DefaultModelPath().value_or("");
    auto t = kvc::LoadTokenizer(path);
    if (!t.ok()) {
      std::cerr << "fuzz: cannot load tokenizer '" << path << "': " << t.status() << "\n";
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "fuzz invariant violated: " << what << "\n";
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const kvc::Tokenizer& tok = GetTokenizer();
  std::string text(reinterpret_cast<const char*>(data), size);
  bool valid = kvc::ValidateUtf8(text).ok();
  kvc::EncodeOptions opts;
  opts.allow_special = size % 2 == 1;
  auto ids = tok.Encode(text, opts);
  Check(ids.ok() == valid, "Encode accepts exactly the valid UTF-8 inputs");
  if (!ids.ok()) {
    Check(ids.status().code() == absl::StatusCode::kInvalidArgument, "invalid UTF-8 is INVALID_ARGUMENT");
  } else {
    auto back = tok.Decode(*ids);
    Check(back.ok(), "encoded ids decode");
    // Bytes the vocabulary lacks become the unknown token (as in Hugging Face); otherwise text round-trips.
    bool has_unk = tok.unk_id().has_value() && std::find(ids->begin(), ids->end(), *tok.unk_id()) != ids->end();
    Check(has_unk || *back == text, "decode(encode(text)) == text");
  }
  // The same bytes read as token ids.
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
  for (int32_t& id : raw) id = static_cast<int32_t>(static_cast<uint32_t>(id) % (tok.vocab_size() + 8)) - 4;
  auto decoded = tok.Decode(raw);
  if (decoded.ok()) {
    Check(kvc::ValidateUtf8(*decoded).ok(), "decoded text is valid UTF-8");
    kvc::IncrementalDetokenizer detok(tok);
    std::string streamed;
    for (int32_t id : raw) streamed += detok.Add(id).value();
    streamed += detok.Finish();
    Check(streamed == *decoded, "streaming decode equals one-shot decode");
  } else {
    Check(decoded.status().code() == absl::StatusCode::kInvalidArgument, "bad ids are INVALID_ARGUMENT");
  }
  return 0;
}
