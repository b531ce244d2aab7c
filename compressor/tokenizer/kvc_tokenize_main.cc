// kvc-tokenize: text on stdin -> token ids (space-separated, one line) on stdout, or the reverse with
// --decode. For debugging prompts and for checking kvc's tokenizer against other implementations.
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "compressor/model/default_model.h"
#include "compressor/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Tokenize text with a model's tokenizer, exactly as Hugging Face tokenizers would.\n\n"
      "  echo 'Hello world' | kvc-tokenize            -> 19556 905\n"
      "  echo '19556 905' | kvc-tokenize --decode     -> Hello world\n"};
  std::string model;
  bool decode = false, allow_special = false, skip_special = false;
  app.add_option("--model", model,
                 "a .gguf file, tokenizer.json, tokenizer.model, or a model directory "
                 "(default: $KVC_MODEL, else the packaged SmolLM2-135M-Instruct)");
  app.add_flag("--decode", decode, "read space-separated token ids and print the text");
  app.add_flag("--allow-special", allow_special,
               "recognize special-token text such as <|im_start|> (off: it is tokenized as plain text)");
  app.add_flag("--skip-special", skip_special, "with --decode, leave special tokens out of the text");
  CLI11_PARSE(app, argc, argv);

  if (model.empty()) {
    auto found = kvc::DefaultModelPath();
    if (!found.ok()) {
      std::cerr << "kvc-tokenize: " << found.status().message() << "\n";
      return 2;
    }
    model = *found;
  }
  auto tokenizer = kvc::LoadTokenizer(model);
  if (!tokenizer.ok()) {
    std::cerr << "kvc-tokenize: " << tokenizer.status().message() << "\n";
    return 1;
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (decode) {
    std::vector<int32_t> ids;
    std::istringstream ss(input);
    std::string word;
    while (ss >> word) {
      try {
        size_t used = 0;
        long long v = std::stoll(word, &used);
        if (used != word.size() || v < INT32_MIN || v > INT32_MAX) throw std::invalid_argument(word);
        ids.push_back(static_cast<int32_t>(v));
      } catch (const std::exception&) {
        std::cerr << "kvc-tokenize: '" << word << "' is not a token id\n";
        return 1;
      }
    }
    kvc::DecodeOptions opts;
    opts.skip_special = skip_special;
    auto text = (*tokenizer)->Decode(ids, opts);
    if (!text.ok()) {
      std::cerr << "kvc-tokenize: " << text.status().message() << "\n";
      return 1;
    }
    std::cout << *text;
    return 0;
  }
  // A trailing newline from `echo` is part of stdin; keep it only when the caller pipes more than one line.
  if (!input.empty() && input.back() == '\n' && input.find('\n') == input.size() - 1) input.pop_back();
  kvc::EncodeOptions opts;
  opts.allow_special = allow_special;
  auto ids = (*tokenizer)->Encode(input, opts);
  if (!ids.ok()) {
    std::cerr << "kvc-tokenize: " << ids.status().message() << "\n";
    return 1;
  }
  for (size_t i = 0; i < ids->size(); ++i) std::cout << (i ? " " : "") << (*ids)[i];
  std::cout << "\n";
  return 0;
}
