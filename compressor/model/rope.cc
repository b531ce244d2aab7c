#include "compressor/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "compressor/model/cpu_kernels.h"

namespace kvc {
namespace {

// The operation order mirrors transformers' modeling_rope_utils so float32 rounding is identical.
torch::Tensor DefaultInvFreq(double base, int64_t dim) {
  torch::Tensor exponents = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  return 1.0 / torch::pow(base, exponents);
}

torch::Tensor Llama3InvFreq(torch::Tensor inv_freq, const RopeScaling& r) {
  double old_len = static_cast<double>(r.original_max_position_embeddings);
  double low_freq_wavelen = old_len / r.low_freq_factor;
  double high_freq_wavelen = old_len / r.high_freq_factor;
  torch::Tensor wavelen = 2 * std::numbers::pi / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
  torch::Tensor smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  torch::Tensor medium = torch::logical_not(wavelen < high_freq_wavelen) *
                         torch::logical_not(wavelen > low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

std::pair<torch::Tensor, double> YarnInvFreq(double base, int64_t dim, const RopeScaling& r) {
  double attention = r.attention_factor;
  if (attention == 0) {
    attention = (r.mscale != 0 && r.mscale_all_dim != 0)
                    ? YarnMscale(r.factor, r.mscale) / YarnMscale(r.factor, r.mscale_all_dim)
                    : YarnMscale(r.factor, 1.0);
  }
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(r.original_max_position_embeddings / (rotations * 2 * std::numbers::pi))) /
           (2 * std::log(base));
  };
  double low = correction_dim(r.beta_fast);
  double high = correction_dim(r.beta_slow);
  if (r.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  torch::Tensor ramp = torch::clamp((torch::arange(dim / 2, torch::kFloat32) - low) / (high - low), 0, 1);
  torch::Tensor extrapolation_factor = 1 - ramp;
  torch::Tensor pos_freqs =
      torch::pow(base, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim));
  torch::Tensor extrapolation = 1.0 / pos_freqs;
  torch::Tensor interpolation = 1.0 / (r.factor * pos_freqs);
  torch::Tensor inv_freq =
      interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
  return {inv_freq, attention};
}

}  // namespace

absl::StatusOr<Rope> Rope::Create(const ModelConfig& config, std::optional<torch::Tensor> freq_factors) {
  const int64_t dim = config.head_dim;
  const RopeScaling& r = config.rope_scaling;
  c10::InferenceMode guard;
  torch::Tensor inv_freq;
  double attention = 1.0;
  switch (r.type) {
    case RopeScalingType::kNone:
      inv_freq = DefaultInvFreq(config.rope_theta, dim);
      break;
    case RopeScalingType::kLinear:
      inv_freq = DefaultInvFreq(config.rope_theta, dim) / r.factor;
      break;
    case RopeScalingType::kLlama3:
      inv_freq = Llama3InvFreq(DefaultInvFreq(config.rope_theta, dim), r);
      break;
    case RopeScalingType::kYarn:
      std::tie(inv_freq, attention) = YarnInvFreq(config.rope_theta, dim, r);
      break;
  }
  if (freq_factors.has_value()) {
    if (freq_factors->numel() != dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat("rope frequency factors have ", freq_factors->numel(),
                                                     " entries, expected ", dim / 2));
    }
    inv_freq = inv_freq / freq_factors->to(torch::kFloat32).reshape({dim / 2});
  }
  return Rope(inv_freq.contiguous(), attention);
}

torch::Tensor Rope::inv_freq_on(const torch::Device& device) const {
  if (inv_freq_device_.defined() && inv_freq_device_.device() == device) return inv_freq_device_;
  return inv_freq_.to(device);
}

Rope Rope::OnDevice(const torch::Device& device) const {
  Rope r = *this;
  r.inv_freq_device_ = inv_freq_.to(device);
  return r;
}

std::pair<torch::Tensor, torch::Tensor> Rope::CosSin(const torch::Tensor& positions,
                                                     torch::ScalarType dtype) const {
  torch::Tensor inv = inv_freq_on(positions.device());
  torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(1) * inv.unsqueeze(0);  // [n, dim/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor cos = emb.cos(), sin = emb.sin();
  if (attention_scaling_ != 1.0) {
    cos = cos * attention_scaling_;
    sin = sin * attention_scaling_;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

torch::Tensor Rope::Apply(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (x.dim() == 3 && cos.dim() == 2 && cos.sizes() == sin.sizes() && cos.size(0) == x.size(1) &&
      cos.size(1) == x.size(2) && cos.is_contiguous() && sin.is_contiguous() &&
      cpu_kernels::Eligible({&x, &cos, &sin})) {
    return cpu_kernels::Rotary(x, cos, sin);
  }
  int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.narrow(-1, 0, half);
  torch::Tensor x2 = x.narrow(-1, half, half);
  torch::Tensor rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace kvc
