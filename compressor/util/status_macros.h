// Early-return helpers for absl::Status / absl::StatusOr. Debian's Abseil (20220623) ships none.
//
//   KVC_RETURN_IF_ERROR(DoThing());
//   KVC_ASSIGN_OR_RETURN(auto file, OpenFile(path));
//   KVC_ASSIGN_OR_RETURN(config.layers, ReadInt(meta, "block_count"));
#ifndef KVC_COMPRESSOR_UTIL_STATUS_MACROS_H_
#define KVC_COMPRESSOR_UTIL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KVC_RETURN_IF_ERROR(expr)                        \
  do {                                                   \
    ::absl::Status kvc_status_ = (expr);                 \
    if (!kvc_status_.ok()) return kvc_status_;           \
  } while (0)

#define KVC_STATUS_CONCAT_INNER_(a, b) a##b
#define KVC_STATUS_CONCAT_(a, b) KVC_STATUS_CONCAT_INNER_(a, b)

#define KVC_ASSIGN_OR_RETURN(lhs, expr) \
  KVC_ASSIGN_OR_RETURN_IMPL_(KVC_STATUS_CONCAT_(kvc_statusor_, __LINE__), lhs, expr)

#define KVC_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KVC_COMPRESSOR_UTIL_STATUS_MACROS_H_
