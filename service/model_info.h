// ModelInfo (proto/kvc/v1/compressor.proto) for GetModelInfo: the served model, the compression methods the
// server offers with their options and defaults, and the server's limits.
//
// Thread safety: pure functions.
#ifndef KVC_SERVICE_MODEL_INFO_H_
#define KVC_SERVICE_MODEL_INFO_H_

#include <vector>

#include "proto/kvc/v1/compressor.pb.h"
#include "service/compress_request.h"
#include "service/model_runtime.h"

namespace kvc {

// Every method of KnownMethods(), sorted by name, with whether it scores with the query under its default
// options and each option's name, default and description (the defaults the methods library applies;
// prefill_chunk is AutoPrefillChunk of the model, the chunk_tokens default of the methods other than Finch).
std::vector<kvc::v1::MethodInfo> MethodCatalog(int64_t prefill_chunk);

kvc::v1::ModelInfo BuildModelInfo(const ModelRuntime& runtime, const CompressorLimits& limits);

}  // namespace kvc

#endif  // KVC_SERVICE_MODEL_INFO_H_
