// kvc-explain: compresses one document for one question on the local model, as the server would (the same
// prompt, the same methods), and writes an HTML page of what was kept (kept_page.h).
//
//   kvc-explain --doc docs/samples/gpl.txt --query "What is the pass key?" --ratio 8 --out kept.html
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compressor/explain/kept_page.h"
#include "compressor/methods/compression.h"
#include "compressor/model/default_model.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/text_boundaries.h"

namespace {

int Fail(const std::string& what, const absl::Status& s) {
  std::cerr << "kvc-explain: " << what << ": " << s << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write an HTML page of what a compression method keeps of a document for a question"};
  std::string model_path, doc_path, query, out_path = "-", method = "focus",
              system(kvc::kDefaultSystemPrompt);
  double ratio = 0;
  int64_t target_tokens = 0;
  int threads = 0;
  std::vector<std::string> option_args;
  app.add_option("--model", model_path, "model (default: $KVC_MODEL, else the packaged SmolLM2)");
  app.add_option("--doc", doc_path, "the document, a UTF-8 text file")->required();
  app.add_option("-q,--query", query, "the question")->required();
  app.add_option("--method", method, "compression method (default focus)");
  app.add_option("--ratio", ratio, "original/kept, e.g. 8");
  app.add_option("--target-tokens", target_tokens, "context tokens to keep (instead of --ratio)");
  app.add_option("--option", option_args, "method option NAME=VALUE, repeatable");
  app.add_option("--system", system, "the system prompt inside the protected prefix");
  app.add_option("--out", out_path, "the HTML file (default: standard output)");
  app.add_option("--threads", threads, "intra-op threads (0: LibTorch's default)");
  CLI11_PARSE(app, argc, argv);
  if (ratio == 0 && target_tokens == 0 && method != "none") ratio = 8;

  std::ifstream doc_file(doc_path, std::ios::binary);
  if (!doc_file) return Fail(doc_path, absl::NotFoundError("cannot open the document"));
  std::stringstream doc;
  doc << doc_file.rdbuf();

  if (model_path.empty()) {
    auto found = kvc::DefaultModelPath();
    if (!found.ok()) return Fail("model", found.status());
    model_path = *found;
  }
  kvc::ModelOptions mo;
  mo.num_threads = threads;
  auto model = kvc::LlamaModel::Load(model_path, mo);
  if (!model.ok()) return Fail(model_path, model.status());
  auto tok = kvc::LoadTokenizer(model_path);
  if (!tok.ok()) return Fail(model_path, tok.status());

  auto prompt = kvc::EncodeCompressionPrompt(**tok, kvc::DetectChatFormat((*tok)->chat_template()), system,
                                             doc.str(), query);
  if (!prompt.ok()) return Fail("prompt", prompt.status());
  kvc::CompressionSpec spec;
  spec.method = method;
  spec.ratio = ratio;
  spec.target_tokens = target_tokens;
  for (const std::string& o : option_args) {
    std::vector<std::string> nv = absl::StrSplit(o, absl::MaxSplits('=', 1));
    if (nv.size() != 2) return Fail("--option", absl::InvalidArgumentError(absl::StrCat("'", o, "' is not NAME=VALUE")));
    spec.options[nv[0]] = nv[1];
  }
  auto compressor = kvc::CreateCompressionMethod(spec);
  if (!compressor.ok()) return Fail("spec", compressor.status());
  kvc::CompressionInput in;
  in.model = model->get();
  in.context = prompt->context;
  in.protected_prefix = prompt->protected_prefix;
  in.suffix = prompt->suffix;
  auto boundaries = kvc::TextBoundaries(**tok, in.context);
  if (!boundaries.ok()) return Fail("boundaries", boundaries.status());
  in.boundaries = *std::move(boundaries);
  auto result = (*compressor)->Compress(in);
  if (!result.ok()) return Fail("compress", result.status());

  kvc::KeptPageInput page;
  auto texts = kvc::TokenTexts(**tok, in.context);
  if (!texts.ok()) return Fail("tokens", texts.status());
  page.token_text = *std::move(texts);
  auto counts = kvc::KeptCounts(result->stats.kept_positions, static_cast<int64_t>(in.context.size()));
  if (!counts.ok()) return Fail("kept positions", counts.status());
  page.kept_by = *std::move(counts);
  page.slots = result->cache.num_layers() * result->cache.shape().kv_heads;
  page.protected_prefix = in.protected_prefix;
  page.question = query;
  page.method = method;
  page.budget = ratio != 0 ? absl::StrCat("ratio ", ratio) : absl::StrCat("target_tokens ", target_tokens);
  page.tokens_out = result->stats.tokens_out;
  auto html = kvc::RenderKeptPage(page);
  if (!html.ok()) return Fail("page", html.status());
  if (out_path == "-") {
    std::cout << *html;
  } else {
    std::ofstream out(out_path, std::ios::binary);
    out << *html;
    if (!out) return Fail(out_path, absl::InternalError("cannot write the page"));
  }
  std::cerr << "kvc-explain: " << method << " kept " << result->stats.tokens_out << " of " << in.context.size()
            << " context tokens per head" << (out_path == "-" ? "" : "; page: " + out_path) << "\n";
  return 0;
}
