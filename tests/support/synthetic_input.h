// The compression input the method tests share: a context and a query of spread-out token ids below 512
// (the tiny models' vocabulary), so that attention differs from token to token.
#ifndef KVC_TESTS_SUPPORT_SYNTHETIC_INPUT_H_
#define KVC_TESTS_SUPPORT_SYNTHETIC_INPUT_H_

#include <cstdint>

#include "compressor/methods/compression.h"

namespace kvc::testing {

inline CompressionInput SyntheticInput(const LlamaModel* model, int64_t context_len, int64_t query_len,
                                       int64_t protected_prefix = 0) {
  CompressionInput in;
  in.model = model;
  for (int64_t i = 0; i < context_len; ++i) in.context.push_back((i * 7919 + 13) % 512);
  for (int64_t i = 0; i < query_len; ++i) in.suffix.push_back((i * 104729 + 5) % 512);
  in.protected_prefix = protected_prefix;
  return in;
}

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_SYNTHETIC_INPUT_H_
