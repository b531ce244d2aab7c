#include "compressor/tokenizer/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace kvc::spm {

struct Processor::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Processor::Processor() : impl_(std::make_unique<Impl>()) {}
Processor::~Processor() = default;

std::string Processor::Load(const std::string& path) {
  auto s = impl_->sp.Load(path);
  return s.ok() ? "" : s.ToString();
}

std::string Processor::Encode(const std::string& text, std::vector<int>* ids) const {
  auto s = impl_->sp.Encode(text, ids);
  return s.ok() ? "" : s.ToString();
}

std::string Processor::Decode(const std::vector<int>& ids, std::string* text) const {
  auto s = impl_->sp.Decode(ids, text);
  return s.ok() ? "" : s.ToString();
}

int Processor::PieceSize() const { return impl_->sp.GetPieceSize(); }
std::string Processor::IdToPiece(int id) const { return impl_->sp.IdToPiece(id); }
bool Processor::IsControl(int id) const { return impl_->sp.IsControl(id); }
bool Processor::IsByte(int id) const { return impl_->sp.IsByte(id); }
bool Processor::IsUnknown(int id) const { return impl_->sp.IsUnknown(id); }
int Processor::BosId() const { return impl_->sp.bos_id(); }
int Processor::EosId() const { return impl_->sp.eos_id(); }
int Processor::UnkId() const { return impl_->sp.unk_id(); }

}  // namespace kvc::spm
