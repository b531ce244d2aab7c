#include "compressor/model/linear_weight.h"

#include <ATen/ops/_convert_weight_to_int4pack_for_cpu.h>
#include <ATen/ops/_weight_int4pack_mm_for_cpu.h>

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

// The CPU kernel packs output rows in blocks of 16.
constexpr int64_t kKernelRowBlock = 16;

}  // namespace

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name) {
  if (name == "float") return WeightFormat::kFloat;
  if (name == "q4") return WeightFormat::kQ4;
  if (name == "int8") return WeightFormat::kInt8;
  return absl::InvalidArgumentError(absl::StrCat("weights '", name, "' is not one of float, q4, int8"));
}

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kQ4: return "q4";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kFloat: break;
  }
  return "float";
}

absl::StatusOr<LinearWeight> LinearWeight::Create(const std::string& name, const torch::Tensor& w,
                                                  const torch::Tensor& bias, WeightFormat format,
                                                  torch::ScalarType dtype, vnni_gemv::Kernels kernels) {
  if (w.dim() != 2) return absl::InvalidArgumentError(absl::StrCat(name, ": a linear weight is 2-D"));
  c10::InferenceMode guard;
  LinearWeight out;
  out.format_ = format;
  out.dtype_ = dtype;
  if (bias.defined()) out.bias_ = bias.to(dtype).contiguous();
  if (format == WeightFormat::kFloat) {
    out.dense_ = w.to(dtype).contiguous();
    return out;
  }
  const int64_t rows = w.size(0), cols = w.size(1);
  if (!w.device().is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": weights=", WeightFormatName(format),
                                                   " runs on CPU only; use weights=float on ", w.device().str()));
  }
  if (format == WeightFormat::kInt8) {
    out.int8_ = int8_rows::Quantize(w);
    if (vnni_gemv::Usable(kernels)) out.int8_.code_sums = vnni_gemv::RowSums(out.int8_.codes);
    return out;
  }
  if (cols % kGroup != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": weights=q4 needs an input dimension divisible by ",
                                                   kGroup, ", this one has ", cols));
  }
  // Asymmetric 4-bit groups as GGUF's Q4_1 makes them: the group's minimum maps to code 0 and its maximum to
  // 15, so the values of a Q4_1 file (scale * code + min) come back as the same codes, scales and minima.
  torch::Tensor g = w.to(torch::kFloat32).reshape({rows, cols / kGroup, kGroup});
  torch::Tensor lo = std::get<0>(g.min(-1, /*keepdim=*/true));
  torch::Tensor hi = std::get<0>(g.max(-1, /*keepdim=*/true));
  torch::Tensor scale = (hi - lo) / 15.0;
  torch::Tensor inv = torch::where(scale > 0, 1.0 / scale, torch::zeros_like(scale));
  out.codes_ = ((g - lo) * inv).round().clamp(0, 15).to(torch::kUInt8).contiguous();
  out.scale_ = scale.contiguous();
  out.min_ = lo.contiguous();
  if (rows % kKernelRowBlock == 0) {
    if (vnni_gemv::Usable(kernels)) {
      out.vnni_ = vnni_gemv::PackQ4(out.codes_.reshape({rows, cols}), scale.squeeze(-1), lo.squeeze(-1));
    } else {
      out.packed_ = at::_convert_weight_to_int4pack_for_cpu(out.codes_.reshape({rows, cols}).to(torch::kInt32),
                                                            /*innerKTiles=*/1);
      // The kernel computes (code - 8) * scale + zero.
      torch::Tensor zero = lo + 8.0 * scale;
      out.scale_zero_ = torch::cat({scale, zero}, -1).transpose(0, 1).to(torch::kBFloat16).contiguous();
    }
  }
  return out;
}

torch::Tensor LinearWeight::Dense() const {
  if (format_ == WeightFormat::kFloat) return dense_;
  c10::InferenceMode guard;
  if (format_ == WeightFormat::kInt8) {
    return (int8_.codes.to(torch::kFloat32) * int8_.scales.unsqueeze(1)).to(dtype_);
  }
  const int64_t rows = codes_.size(0);
  return torch::addcmul(min_, codes_.to(torch::kFloat32), scale_).reshape({rows, -1}).to(dtype_);
}

bool LinearWeight::UsesKernel(int64_t rows) const {
  return format_ == WeightFormat::kQ4 && packed_.defined() && rows <= kKernelMaxRows;
}

bool LinearWeight::UsesVnni(int64_t rows) const {
  return format_ == WeightFormat::kQ4 && vnni_.defined() && rows <= kKernelMaxRows;
}

torch::ScalarType LinearWeight::InputType(int64_t rows) const {
  return UsesKernel(rows) ? torch::kBFloat16 : dtype_;
}

torch::Tensor LinearWeight::Product(const torch::Tensor& x) const {
  if (UsesVnni(x.size(0))) {
    torch::Tensor y = vnni_gemv::Product(x, vnni_);
    return bias_.defined() ? y + bias_ : y;
  }
  if (UsesKernel(x.size(0))) {
    torch::Tensor y = at::_weight_int4pack_mm_for_cpu(x.to(torch::kBFloat16).contiguous(), packed_, kGroup,
                                                      scale_zero_);
    return bias_.defined() ? y.to(dtype_) + bias_ : y;
  }
  if (format_ == WeightFormat::kInt8) {
    return int8_rows::Product(int8_rows::Quantize(x, int8_rows::Digits::kTwo), int8_, bias_);
  }
  torch::Tensor W = Dense();
  torch::Tensor xd = x.to(dtype_);
  return bias_.defined() ? torch::addmm(bias_, xd, W.t()) : torch::mm(xd, W.t());
}

torch::Tensor LinearWeight::Apply(const torch::Tensor& x) const { return Product(x).to(dtype_); }

int64_t LinearWeight::bytes() const {
  int64_t n = 0;
  for (const torch::Tensor* t :
       {&dense_, &bias_, &codes_, &scale_, &min_, &packed_, &scale_zero_, &vnni_.blocks,
        &int8_.codes, &int8_.scales, &int8_.code_sums}) {
    if (t->defined()) n += t->numel() * t->element_size();
  }
  return n;
}

}  // namespace kvc
