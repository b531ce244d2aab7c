// Locations of generated test fixtures. ctest sets KVC_TESTDATA (the build's testdata/ directory) and
// KVC_SOURCE_DIR; tests that need a fixture that is absent fail loudly rather than skip.
#ifndef KVC_TESTS_SUPPORT_TESTDATA_H_
#define KVC_TESTS_SUPPORT_TESTDATA_H_

#include <cstdlib>
#include <string>

namespace kvc::testing {

inline std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// Path of a fixture file under the generated testdata directory.
inline std::string TestData(const std::string& relative) {
  return EnvOr("KVC_TESTDATA", "build/testdata") + "/" + relative;
}

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_TESTDATA_H_
