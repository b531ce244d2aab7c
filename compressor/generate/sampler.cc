#include "compressor/generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace kvc {
namespace {

// Tokens whose scaled logit is this far below the best have a relative weight under e^-60 (~1e-26): even
// summed over a 10^5 vocabulary they stay below the 2^-53 resolution of the draw, so dropping them before
// sorting changes no outcome and keeps the sort small.
constexpr double kNegligibleLogitGap = 60.0;

}  // namespace

TokenSampler::TokenSampler(const SamplerParams& params, int64_t vocab_limit)
    : params_(params), vocab_limit_(vocab_limit), rng_(params.seed) {}

int64_t TokenSampler::Next(const torch::Tensor& logits) {
  torch::Tensor usable = logits.size(0) > vocab_limit_ ? logits.narrow(0, 0, vocab_limit_) : logits;
  if (params_.temperature <= 0.0 || params_.top_k == 1) {
    // torch's argmax returns the first maximal index, which is exactly GenerateGreedy's choice.
    return usable.argmax().item<int64_t>();
  }
  return Sample(usable);
}

int64_t TokenSampler::Sample(const torch::Tensor& logits) {
  torch::Tensor cpu = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  const int64_t n = cpu.size(0);
  const float* raw = cpu.data_ptr<float>();
  values_.assign(raw, raw + n);
  float best = -std::numeric_limits<float>::infinity();
  for (float& v : values_) {
    if (std::isnan(v)) v = -std::numeric_limits<float>::infinity();
    best = std::max(best, v);
  }
  if (std::isinf(best) && best < 0) return 0;  // nothing finite to sample from; the lowest id, as argmax

  const double inv_t = 1.0 / params_.temperature;
  order_.clear();
  for (int64_t i = 0; i < n; ++i) {
    if ((static_cast<double>(best) - values_[i]) * inv_t <= kNegligibleLogitGap) {
      order_.push_back(static_cast<int32_t>(i));
    }
  }
  // Descending logit, ties to the lower id: deterministic whatever the sort algorithm.
  auto better = [this](int32_t a, int32_t b) {
    return values_[a] > values_[b] || (values_[a] == values_[b] && a < b);
  };
  const size_t k =
      params_.top_k > 0 ? std::min<size_t>(order_.size(), static_cast<size_t>(params_.top_k)) : order_.size();
  if (k < order_.size()) {
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), better);
    order_.resize(k);
  } else {
    std::sort(order_.begin(), order_.end(), better);
  }

  weights_.resize(order_.size());
  double total = 0;
  for (size_t i = 0; i < order_.size(); ++i) {
    weights_[i] = std::exp((static_cast<double>(values_[order_[i]]) - best) * inv_t);
    total += weights_[i];
  }
  size_t kept = order_.size();
  if (params_.top_p < 1.0) {
    // The nucleus: the shortest prefix whose mass reaches top_p (at least the best token).
    const double target = params_.top_p * total;
    double cum = 0;
    for (size_t i = 0; i < order_.size(); ++i) {
      cum += weights_[i];
      if (cum >= target) {
        kept = i + 1;
        break;
      }
    }
  }
  double kept_total = std::accumulate(weights_.begin(), weights_.begin() + kept, 0.0);
  // 53 random bits: a uniform double in [0, 1) with the same value on every standard library.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * kept_total;
  double cum = 0;
  for (size_t i = 0; i < kept; ++i) {
    cum += weights_[i];
    if (u < cum) return order_[i];
  }
  return order_[kept - 1];
}

}  // namespace kvc
