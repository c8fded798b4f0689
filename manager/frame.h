// The worker protocol's framing: one frame is a 4-byte big-endian length followed by that many
// bytes of UTF-8 JSON holding one object.
//
// The bytes come from a sandboxed worker, which runs tenant code and so may send anything. The
// reader therefore checks a length prefix against the configured maximum before it keeps a
// single byte of the body (a prefix of 0xFFFFFFFF must not make the daemon reserve 4 GiB), and
// refuses a body that is not valid UTF-8, not JSON, not an object, or nested deeper than
// kMaxFrameDepth (so that printing or destroying it can never exhaust a thread's stack).
//
// Thread safety: FrameReader is a value with no shared state; one thread feeds it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sandbox/status.h"

namespace corral {

inline constexpr size_t kFrameHeaderSize = 4;
inline constexpr size_t kDefaultMaxFrame = 16u << 20;  // 16 MiB, the worker's default too
// Deep enough for any honest message; shallow enough that recursive code over a parsed frame
// (dump, compare) stays far from the end of a thread's stack.
inline constexpr size_t kMaxFrameDepth = 256;

// Status reasons a frame can fail with (shown as `error.code`).
inline constexpr std::string_view kFrameTooLarge = "frame_too_large";
inline constexpr std::string_view kMalformedFrame = "malformed_frame";

// Serializes `message` (which must be an object) into one frame. Fails with reason
// malformed_frame when the message is not an object, holds invalid UTF-8 or nests too deep,
// and with frame_too_large when the body would exceed `max_frame` bytes.
Result<std::string> EncodeFrame(const nlohmann::json& message, size_t max_frame = kDefaultMaxFrame);

// Checks that no array or object in `text` (JSON) nests deeper than `max_depth`. Strings are
// skipped, so brackets inside them do not count.
bool JsonDepthWithin(std::string_view text, size_t max_depth);

// Cuts a byte stream into frames. Feed() bytes as they arrive; Next() hands out each complete
// frame in order. The first bad frame makes the reader fail for good: Next() returns the frames
// completed before it, then that error forever, and later bytes are dropped, since after a bad
// frame nothing in the stream can be trusted to start on a frame boundary.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame = kDefaultMaxFrame) : max_frame_(max_frame) {}

  void Feed(std::string_view bytes);

  // A complete frame, the stream's error, or nullopt when more bytes are needed.
  std::optional<Result<nlohmann::json>> Next();

  // Bytes held for an incomplete frame (header or body). Bounded by the maximum frame size.
  size_t buffered_bytes() const { return header_.size() + body_.size(); }
  bool failed() const { return error_.has_value(); }

 private:
  size_t TakeHeader(std::string_view bytes);
  size_t TakeBody(std::string_view bytes);
  void Fail(Status status);

  size_t max_frame_;
  std::string header_;                 // the length prefix while it is incomplete
  std::optional<uint32_t> body_size_;  // set once the prefix is complete and accepted
  std::string body_;
  std::deque<nlohmann::json> ready_;
  std::optional<Status> error_;
};

// Parses one frame body. Exposed for the tests and for callers that read bodies themselves.
Result<nlohmann::json> DecodeFrameBody(std::string_view body);

}  // namespace corral
