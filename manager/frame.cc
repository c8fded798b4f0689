#include "manager/frame.h"

#include <algorithm>

#include <fmt/format.h>

namespace corral {
namespace {

Status FrameError(std::string_view reason, std::string message) {
  ErrorCategory category =
      reason == kFrameTooLarge ? ErrorCategory::kTooLarge : ErrorCategory::kInvalidArgument;
  return Status::Error(category, std::move(message)).WithReason(std::string(reason));
}

uint32_t DecodeLength(std::string_view header) {
  uint32_t length = 0;
  for (unsigned char byte : header) length = (length << 8) | byte;
  return length;
}

std::string EncodeLength(uint32_t length) {
  std::string header(kFrameHeaderSize, '\0');
  for (size_t i = 0; i < kFrameHeaderSize; ++i) {
    header[i] = static_cast<char>((length >> (8 * (kFrameHeaderSize - 1 - i))) & 0xFF);
  }
  return header;
}

}  // namespace

bool JsonDepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Result<nlohmann::json> DecodeFrameBody(std::string_view body) {
  // The depth check runs first: it is linear and bounded, while parsing a hostile nest of a
  // million brackets would build a structure whose recursive uses could overflow the stack.
  if (!JsonDepthWithin(body, kMaxFrameDepth)) {
    return FrameError(kMalformedFrame,
                      fmt::format("frame nests deeper than {} levels", kMaxFrameDepth));
  }
  nlohmann::json message;
  try {
    message = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& e) {
    return FrameError(kMalformedFrame, fmt::format("frame is not valid UTF-8 JSON: {}", e.what()));
  }
  if (!message.is_object()) {
    return FrameError(kMalformedFrame,
                      fmt::format("frame holds a JSON {}, not an object", message.type_name()));
  }
  return message;
}

Result<std::string> EncodeFrame(const nlohmann::json& message, size_t max_frame) {
  if (!message.is_object()) {
    return FrameError(kMalformedFrame,
                      fmt::format("frame must hold an object, not a {}", message.type_name()));
  }
  std::string body;
  try {
    // Strict: the daemon only sends JSON it built, so invalid UTF-8 here is a bug to report,
    // not something to paper over with replacement characters.
    body = message.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    return FrameError(kMalformedFrame, fmt::format("encode frame: {}", e.what()));
  }
  if (!JsonDepthWithin(body, kMaxFrameDepth)) {
    return FrameError(kMalformedFrame,
                      fmt::format("frame nests deeper than {} levels", kMaxFrameDepth));
  }
  if (body.size() > max_frame) {
    return FrameError(kFrameTooLarge, fmt::format("frame of {} bytes exceeds the maximum of {}",
                                                  body.size(), max_frame));
  }
  return EncodeLength(static_cast<uint32_t>(body.size())) + body;
}

void FrameReader::Feed(std::string_view bytes) {
  while (!bytes.empty() && !error_) {
    size_t used = body_size_ ? TakeBody(bytes) : TakeHeader(bytes);
    bytes.remove_prefix(used);
  }
}

size_t FrameReader::TakeHeader(std::string_view bytes) {
  size_t used = std::min(bytes.size(), kFrameHeaderSize - header_.size());
  header_.append(bytes.substr(0, used));
  if (header_.size() < kFrameHeaderSize) return used;

  // Checked before any byte of the body is kept: a hostile prefix costs nothing.
  uint32_t length = DecodeLength(header_);
  header_.clear();
  if (length > max_frame_) {
    Fail(FrameError(kFrameTooLarge, fmt::format("frame length prefix {} exceeds the maximum of {}",
                                                length, max_frame_)));
    return used;
  }
  if (length == 0) {
    Fail(FrameError(kMalformedFrame, "empty frame"));
    return used;
  }
  body_size_ = length;
  return used;
}

size_t FrameReader::TakeBody(std::string_view bytes) {
  size_t used = std::min(bytes.size(), static_cast<size_t>(*body_size_) - body_.size());
  body_.append(bytes.substr(0, used));
  if (body_.size() < *body_size_) return used;

  Result<nlohmann::json> frame = DecodeFrameBody(body_);
  body_.clear();
  body_.shrink_to_fit();  // do not keep a 16 MiB buffer alive for the next small frame
  body_size_.reset();
  if (!frame.ok()) {
    Fail(frame.status());
    return used;
  }
  ready_.push_back(std::move(frame).value());
  return used;
}

void FrameReader::Fail(Status status) {
  error_ = std::move(status);
  header_.clear();
  body_.clear();
  body_.shrink_to_fit();
}

std::optional<Result<nlohmann::json>> FrameReader::Next() {
  if (!ready_.empty()) {
    nlohmann::json frame = std::move(ready_.front());
    ready_.pop_front();
    return Result<nlohmann::json>(std::move(frame));
  }
  if (error_) return Result<nlohmann::json>(*error_);
  return std::nullopt;
}

}  // namespace corral
