// The only place that includes libsentencepiece's header: it declares its own absl::string_view, which
// clashes with Abseil's, so nothing here may see Abseil. Plain std types in, plain std types out.
#ifndef KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_BACKEND_H_
#define KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

namespace kvc::spm {

class Processor {
 public:
  Processor();
  ~Processor();
  // Empty string on success, else the library's message.
  std::string Load(const std::string& path);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;
  int PieceSize() const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsByte(int id) const;
  bool IsUnknown(int id) const;
  int BosId() const;
  int EosId() const;
  int UnkId() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::spm

#endif  // KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_BACKEND_H_
