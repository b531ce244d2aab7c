// Finch at 8x on a ~33K-token document with SmolLM2 (window 8K): the chunked prefill completes, an instrumented
// high-water mark shows the cache never held more than budget + chunk + query entries, and the compressed
// cache answers a needle question planted in the middle of the document.
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compressor/methods/compression.h"
#include "compressor/model/greedy.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

TEST(FinchLongContextTest, ThirtyTwoThousandTokensInBoundedMemory) {
  std::string path = kvc::testing::EnvOr("KVC_SMOLLM2_GGUF", "");
  ASSERT_FALSE(path.empty());
  auto model = LlamaModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status();
  auto tok = LoadTokenizer(path);
  ASSERT_TRUE(tok.ok()) << tok.status();

  // A haystack of varied, deterministic sentences with one needle at 60% depth. (A haystack of one repeated
  // sentence is a poor test: thousands of identical keys crowd the selection.)
  const char* names[] = {"Alice", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana",
                         "Ivo", "Jules", "Kofi", "Lena", "Milo", "Nadia", "Otto", "Priya"};
  const char* things[] = {"apples", "bicycles", "lanterns", "violins", "maps", "kettles", "books", "ropes"};
  const char* places[] = {"harbor", "market", "library", "station", "garden", "bakery", "museum", "workshop"};
  uint64_t state = 12345;
  auto next = [&state](uint64_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>((state >> 33) % n);
  };
  const int sentences = std::stoi(kvc::testing::EnvOr("KVC_LONG_SENTENCES", "2700"));
  std::string document;
  for (int i = 0; i < sentences; ++i) {
    if (i == sentences * 3 / 5) document += "The secret password is Marmalade. Remember it: the password is Marmalade. ";
    switch (next(3)) {
      case 0:
        absl::StrAppend(&document, names[next(16)], " carried ", 2 + next(88), " ", things[next(8)], " to the ",
                        places[next(8)], ". ");
        break;
      case 1:
        absl::StrAppend(&document, "On day ", 1 + next(300), ", the ", places[next(8)], " sold ", things[next(8)],
                        " to ", names[next(16)], ". ");
        break;
      default:
        absl::StrAppend(&document, names[next(16)], " and ", names[next(16)], " repaired the ", things[next(8)],
                        " near the ", places[next(8)], ". ");
    }
  }
  auto encoded = EncodeCompressionPrompt(**tok, ChatFormat::kChatMl,
                                         "Answer the question using only the context. Reply with the answer only.",
                                         document, "What is the secret password?");
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  CompressionInput in;
  in.model = model->get();
  in.context = encoded->context;
  in.protected_prefix = encoded->protected_prefix;
  in.suffix = encoded->suffix;
  const int64_t n = static_cast<int64_t>(in.context.size());
  const int64_t window = (*model)->config().max_position_embeddings;
  std::cout << "context " << n << " tokens (" << static_cast<double>(n) / window << "x the model window)\n";
  if (sentences >= 2700) {
    EXPECT_GE(n, 4 * window);
  }

  const int64_t chunk = 2048;
  CompressionSpec spec;
  spec.method = "finch";
  spec.ratio = 8;
  spec.options = {{"chunk_tokens", std::to_string(chunk)}};
  auto method = CreateCompressionMethod(spec);
  ASSERT_TRUE(method.ok()) << method.status();
  auto r = (*method)->Compress(in);
  ASSERT_TRUE(r.ok()) << r.status();
  const int64_t budget = n / 8;
  const int64_t q = static_cast<int64_t>(in.suffix.size());
  double total_s = 0;
  for (double s : r->stats.chunk_seconds) total_s += s;
  std::cout << "kept " << r->stats.tokens_out << ", peak cache " << r->stats.peak_cache_entries << " entries (bound "
            << budget + chunk + q << "), " << r->stats.chunk_seconds.size() << " chunks in " << total_s << " s\n";
  EXPECT_EQ(r->stats.tokens_out, budget);
  EXPECT_LE(r->stats.peak_cache_entries, budget + chunk + q);

  GreedyOptions go;
  go.max_new_tokens = 16;
  if (auto id = (*tok)->SpecialTokenId("<|im_end|>")) go.stop_token_ids.push_back(*id);
  auto out = GenerateGreedy(**model, in.suffix, r->cache, go);
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<int32_t> ids(out->begin(), out->end());
  DecodeOptions dopt;
  dopt.skip_special = true;
  std::string answer = (*tok)->Decode(ids, dopt).value();
  std::cout << "answer: " << answer << "\n";
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(answer), "marmalade")) << answer;
}

}  // namespace
}  // namespace kvc
