#include "compressor/model/safetensors_weights.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A header larger than this is not a plausible safetensors file (the format itself caps it at 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& s, const std::string& name) {
  if (s == "F32") return torch::kFloat32;
  if (s == "F16") return torch::kFloat16;
  if (s == "BF16") return torch::kBFloat16;
  if (s == "F64") return torch::kFloat64;
  if (s == "I64") return torch::kInt64;
  if (s == "I32") return torch::kInt32;
  if (s == "I16") return torch::kInt16;
  if (s == "I8") return torch::kInt8;
  if (s == "U8") return torch::kUInt8;
  if (s == "BOOL") return torch::kBool;
  return absl::UnimplementedError(absl::StrCat("safetensors tensor ", name, " has unsupported dtype ", s));
}

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsWeights>> SafetensorsWeights::Open(const std::string& path) {
  auto weights = std::unique_ptr<SafetensorsWeights>(new SafetensorsWeights());
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json")) {
      p = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors")) {
      p = p / "model.safetensors";
    } else {
      return absl::NotFoundError(absl::StrCat("no model.safetensors or index in ", path));
    }
  }
  if (p.filename().string().ends_with(".index.json")) {
    KVC_ASSIGN_OR_RETURN(std::string text, ReadText(p));
    json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(p.string(), " has no weight_map object"));
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string()) return absl::InvalidArgumentError(absl::StrCat(p.string(), ": bad entry ", name));
      std::string shard = file.get<std::string>();
      // Shard names come from the file; refuse anything that would leave the model directory.
      if (shard.find('/') != std::string::npos || shard == "..") {
        return absl::InvalidArgumentError(absl::StrCat(p.string(), ": shard name ", shard, " is not a file name"));
      }
      shards.insert(shard);
    }
    for (const std::string& shard : shards) {
      KVC_RETURN_IF_ERROR(weights->AddFile((p.parent_path() / shard).string()));
    }
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!weights->Has(name)) {
        return absl::DataLossError(absl::StrCat("index lists ", name, " in ", file.get<std::string>(),
                                                " but that shard does not hold it"));
      }
    }
  } else {
    KVC_RETURN_IF_ERROR(weights->AddFile(p.string()));
  }
  return weights;
}

absl::Status SafetensorsWeights::AddFile(const std::string& path) {
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::shared_ptr<MappedFile> file(std::move(mapped));
  const uint64_t size = file->size();
  if (size < 8) {
    return absl::DataLossError(absl::StrCat(path, " is truncated: ", size, " bytes, no safetensors header"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a safetensors file (header length ",
                                                   header_len, ")"));
  }
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(path, " is truncated: header of ", header_len,
                                            " bytes but the file has ", size));
  }
  const char* header = reinterpret_cast<const char*>(file->data() + 8);
  json j = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has a malformed safetensors header"));
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") continue;
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") ||
        !info.contains("data_offsets") || !info["dtype"].is_string() || !info["shape"].is_array() ||
        !info["data_offsets"].is_array() || info["data_offsets"].size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": malformed entry for tensor ", name));
    }
    Entry e;
    e.file = file;
    KVC_ASSIGN_OR_RETURN(e.dtype, ParseDtype(info["dtype"].get<std::string>(), name));
    uint64_t numel = 1;
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) return absl::InvalidArgumentError(absl::StrCat(path, ": bad shape of ", name));
      uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40) || (dim > 0 && numel > (uint64_t{1} << 48) / dim)) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": implausible shape of ", name));
      }
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = info["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad data_offsets of ", name));
    }
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en - b != numel * c10::elementSize(e.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": data_offsets of ", name,
                                                     " do not match its shape and dtype"));
    }
    if (en > data_size) {
      return absl::DataLossError(absl::StrCat(path, " is truncated: tensor ", name, " ends at byte ",
                                              data_start + en, " of ", size));
    }
    e.begin = data_start + b;
    e.end = data_start + en;
    if (entries_.count(name)) return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " appears twice"));
    entries_.emplace(name, std::move(e));
  }
  files_.push_back(path);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> SafetensorsWeights::Load(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("tensor ", name, " is not in the weights"));
  const Entry& e = it->second;
  void* ptr = const_cast<uint8_t*>(e.file->data() + e.begin);
  size_t align = c10::elementSize(e.dtype);
  if (reinterpret_cast<uintptr_t>(ptr) % align != 0) {
    // Misaligned data cannot back a typed tensor; copy it out through a byte tensor.
    torch::Tensor bytes = torch::empty({static_cast<int64_t>(e.end - e.begin)}, torch::kUInt8);
    std::memcpy(bytes.data_ptr(), ptr, e.end - e.begin);
    return bytes.view(e.dtype).reshape(e.shape);
  }
  std::shared_ptr<MappedFile> keep = e.file;
  return torch::from_blob(ptr, e.shape, [keep](void*) {}, torch::TensorOptions().dtype(e.dtype));
}

std::vector<std::string> SafetensorsWeights::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, e] : entries_) names.push_back(name);
  return names;
}

}  // namespace kvc
