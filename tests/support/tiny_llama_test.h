// A GoogleTest fixture whose suite shares one tiny random Llama (the tiny_llama fixture that
// tests/tools/make_fixtures.py writes), loaded once per suite because loading dominates these tests.
#ifndef KVC_TESTS_SUPPORT_TINY_LLAMA_TEST_H_
#define KVC_TESTS_SUPPORT_TINY_LLAMA_TEST_H_

#include "compressor/model/llama_model.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc::testing {

class TinyLlamaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(TestData("tiny_llama"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }

  inline static LlamaModel* model_ = nullptr;
};

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_TINY_LLAMA_TEST_H_
