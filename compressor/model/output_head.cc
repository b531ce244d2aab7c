#include "compressor/model/output_head.h"

#include <ATen/ops/_weight_int8pack_mm.h>

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

// Symmetric int8 along the last dimension of w (float32): that dimension's largest magnitude maps to 127.
// Returns the codes (int8) and the scales (keepdim), the scales rounded through `scale_dtype`.
std::pair<torch::Tensor, torch::Tensor> Symmetric(const torch::Tensor& w, torch::ScalarType scale_dtype) {
  torch::Tensor scale = (w.abs().amax(-1, /*keepdim=*/true) / 127.0).to(scale_dtype).to(torch::kFloat32);
  torch::Tensor inv = torch::where(scale > 0, 1.0 / scale, torch::zeros_like(scale));
  return {(w * inv).round().clamp(-127, 127).to(torch::kInt8).contiguous(), scale.contiguous()};
}

}  // namespace

absl::StatusOr<OutputHead> OutputHead::Create(const torch::Tensor& table, Options options) {
  c10::InferenceMode guard;
  OutputHead head;
  if (!options.int8 || !table.device().is_cpu()) {
    head.table_ = table;
    return head;
  }
  const int64_t vocab = table.size(0), hidden = table.size(1);
  torch::Tensor w = table.to(torch::kFloat32);
  if (options.rows && hidden % kRowGroup != 0) {
    return absl::InvalidArgumentError(absl::StrCat("embedding: int8 rows need a hidden size divisible by ",
                                                   kRowGroup, ", this one has ", hidden));
  }
  const bool vnni = vnni_gemv::Usable(options.kernels) && vocab % vnni_gemv::kTileRows == 0 && hidden % kRowGroup == 0;
  if (options.rows || vnni) {
    // The scales rounded through half precision, as Q8_0 stores them.
    std::tie(head.row_codes_, head.row_scales_) =
        Symmetric(w.view({vocab, hidden / kRowGroup, kRowGroup}), torch::kHalf);
  }
  if (vnni) {
    head.vnni_ = vnni_gemv::PackInt8(head.row_codes_.view({vocab, hidden}), head.row_scales_.view({vocab, -1}));
    return head;
  }
  auto [codes, scales] = Symmetric(w, torch::kBFloat16);
  head.codes_ = codes;
  head.scales_ = scales.squeeze(1).to(torch::kBFloat16).contiguous();
  return head;
}

torch::Tensor OutputHead::Logits(const torch::Tensor& x) const {
  if (table_.defined()) return torch::mm(x.to(table_.scalar_type()), table_.t()).to(torch::kFloat32);
  const bool few = x.size(0) <= kInt8MaxRows;
  if (few && vnni_.defined()) return vnni_gemv::Product(x, vnni_);
  torch::Tensor a = x.to(torch::kBFloat16).contiguous();
  if (few) return at::_weight_int8pack_mm(a, codes_, scales_).to(torch::kFloat32);
  torch::Tensor w = vnni_.defined()
                        ? (row_codes_.to(torch::kFloat32) * row_scales_).view({row_codes_.size(0), -1})
                        : codes_.to(torch::kFloat32) * scales_.to(torch::kFloat32).unsqueeze(1);
  return torch::mm(a, w.to(torch::kBFloat16).t()).to(torch::kFloat32);
}

torch::Tensor OutputHead::Rows(const torch::Tensor& ids, torch::ScalarType dtype) const {
  if (table_.defined()) return table_.index_select(0, ids).to(dtype);
  const int64_t n = ids.size(0);
  return (row_codes_.index_select(0, ids).to(torch::kFloat32) * row_scales_.index_select(0, ids))
      .view({n, -1})
      .to(dtype);
}

int64_t OutputHead::bytes() const {
  int64_t n = 0;
  for (const torch::Tensor* t : {&table_, &codes_, &scales_, &row_codes_, &row_scales_, &vnni_.blocks}) {
    if (t->defined()) n += t->numel() * t->element_size();
  }
  return n;
}

}  // namespace kvc
