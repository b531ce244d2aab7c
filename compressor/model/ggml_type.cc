#include "compressor/model/ggml_type.h"

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

struct Entry {
  uint32_t id;
  GgmlTypeTraits traits;
};

constexpr Entry kSupported[] = {
    {0, {"F32", 1, 4}},       {1, {"F16", 1, 2}},       {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},    {6, {"Q5_0", 32, 22}},    {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},    {9, {"Q8_1", 32, 36}},    {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}}, {12, {"Q4_K", 256, 144}}, {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}}, {15, {"Q8_K", 256, 292}}, {30, {"BF16", 1, 2}},
};

// Names of ids that exist in ggml but that kvc does not dequantize, so errors can name them.
constexpr std::pair<uint32_t, const char*> kOtherNames[] = {
    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"},
    {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},    {25, "I16"},
    {26, "I32"},     {27, "I64"},    {28, "F64"},     {29, "IQ1_M"}, {34, "TQ1_0"},
    {35, "TQ2_0"},   {39, "MXFP4"},
};

}  // namespace

const GgmlTypeTraits* FindGgmlTypeTraits(uint32_t type) {
  for (const Entry& e : kSupported) {
    if (e.id == type) return &e.traits;
  }
  return nullptr;
}

std::string GgmlTypeName(uint32_t type) {
  if (const GgmlTypeTraits* t = FindGgmlTypeTraits(type)) return t->name;
  for (const auto& [id, name] : kOtherNames) {
    if (id == type) return name;
  }
  return absl::StrCat("type ", type);
}

}  // namespace kvc
