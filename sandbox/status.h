// The one error model of corral (see docs/errors.md).
//
// A fallible function returns Status (or Result<T>): a category, the errno captured at the
// failing call (0 when no system call failed), an optional machine-readable reason that the
// HTTP layer shows as `error.code`, and an operator-facing message. Callers add context as the
// error rises:  "create session `s-42`: mount `/proc`: Operation not permitted".
// The HTTP layer maps categories to status codes in exactly one place (manager/http_errors.cc).
//
// Thread safety: values; no shared state.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace corral {

enum class ErrorCategory {
  kOk = 0,
  kInvalidArgument,     // bad input from a client or a file: 400
  kNotFound,            // 404
  kAlreadyExists,       // 409
  kFailedPrecondition,  // the object is in a state that forbids this: 409
  kPermissionDenied,    // 403
  kUnauthenticated,     // 401
  kTooLarge,            // 413
  kResourceExhausted,   // a limit or a queue is full: 429
  kUnavailable,         // not ready, shutting down: 503
  kDeadlineExceeded,    // 504
  kUnsupported,         // the host cannot do what was asked: 501 / fails start
  kInternal,            // a bug or an unexpected system failure: 500
};

std::string_view CategoryName(ErrorCategory category);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok

  static Status Ok() { return Status(); }
  static Status Error(ErrorCategory category, std::string message, int sys_errno = 0) {
    return Status(category, std::move(message), sys_errno);
  }
  // A failed system call: the category is derived from the errno (ENOENT -> kNotFound, ...).
  static Status FromErrno(int sys_errno, std::string message);
  static Status InvalidArgument(std::string message) {
    return Error(ErrorCategory::kInvalidArgument, std::move(message));
  }
  static Status NotFound(std::string message) {
    return Error(ErrorCategory::kNotFound, std::move(message));
  }
  static Status AlreadyExists(std::string message) {
    return Error(ErrorCategory::kAlreadyExists, std::move(message));
  }
  static Status FailedPrecondition(std::string message) {
    return Error(ErrorCategory::kFailedPrecondition, std::move(message));
  }
  static Status ResourceExhausted(std::string message) {
    return Error(ErrorCategory::kResourceExhausted, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Error(ErrorCategory::kUnavailable, std::move(message));
  }
  static Status DeadlineExceeded(std::string message) {
    return Error(ErrorCategory::kDeadlineExceeded, std::move(message));
  }
  static Status TooLarge(std::string message) {
    return Error(ErrorCategory::kTooLarge, std::move(message));
  }
  static Status Unsupported(std::string message) {
    return Error(ErrorCategory::kUnsupported, std::move(message));
  }
  static Status Internal(std::string message) {
    return Error(ErrorCategory::kInternal, std::move(message));
  }

  bool ok() const { return category_ == ErrorCategory::kOk; }
  ErrorCategory category() const { return category_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }
  // Machine-readable reason shown to API clients as `error.code` ("session_not_found").
  // Empty means "derive from the category".
  const std::string& reason() const { return reason_; }
  // Extra structured details, as a JSON object text (empty when none).
  const std::string& details_json() const { return details_json_; }

  Status WithReason(std::string reason) && {
    reason_ = std::move(reason);
    return std::move(*this);
  }
  Status WithDetails(std::string details_json) && {
    details_json_ = std::move(details_json);
    return std::move(*this);
  }
  // Prefixes the message with what the caller was doing: "mount `/proc`: <message>".
  Status Context(std::string_view what) const&;
  Status Context(std::string_view what) &&;

  // The message with the errno text appended: "open `/x`: No such file or directory".
  std::string ToString() const;

 private:
  Status(ErrorCategory category, std::string message, int sys_errno)
      : category_(category), errno_(sys_errno), message_(std::move(message)) {}

  ErrorCategory category_ = ErrorCategory::kOk;
  int errno_ = 0;
  std::string message_;
  std::string reason_;
  std::string details_json_;
};

// Captures errno right after a failed system call: `return ErrnoStatus("mount `{}`", path);`
template <typename... Args>
Status ErrnoStatus(fmt::format_string<Args...> format, Args&&... args) {
  int saved = errno;
  return Status::FromErrno(saved, fmt::format(format, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace corral

#define CORRAL_CONCAT_INNER(a, b) a##b
#define CORRAL_CONCAT(a, b) CORRAL_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` fails.
#define CORRAL_TRY(expr)                        \
  do {                                          \
    ::corral::Status corral_status_ = (expr);   \
    if (!corral_status_.ok()) return corral_status_; \
  } while (0)

// Same, prefixing the message with context.
#define CORRAL_TRY_CTX(expr, ...)                                            \
  do {                                                                       \
    ::corral::Status corral_status_ = (expr);                                \
    if (!corral_status_.ok())                                                \
      return std::move(corral_status_).Context(fmt::format(__VA_ARGS__));    \
  } while (0)

// `CORRAL_ASSIGN_OR_RETURN(auto x, Compute());`
#define CORRAL_ASSIGN_OR_RETURN(lhs, expr) \
  CORRAL_ASSIGN_OR_RETURN_IMPL(CORRAL_CONCAT(corral_result_, __LINE__), lhs, expr)
#define CORRAL_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
