#include "manager/reply_limits.h"

#include <fmt/format.h>

namespace corral {
namespace {

// Byte offset just past the first `max_chars` UTF-8 characters of `text`, or npos when it has
// no more than that. A continuation byte (10xxxxxx) never starts a character.
size_t CutAfterChars(const std::string& text, uint64_t max_chars) {
  uint64_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (chars == max_chars) return i;
    ++chars;
  }
  return std::string::npos;
}

void BoundOutput(const char* stream, uint64_t max_chars, nlohmann::json* result) {
  auto it = result->find(stream);
  if (it == result->end() || !it->is_string()) return;
  auto& text = it->get_ref<std::string&>();
  if (text.size() <= max_chars) return;  // fewer bytes than the limit: fewer characters too
  size_t cut = CutAfterChars(text, max_chars);
  if (cut == std::string::npos) return;
  text.resize(cut);
  (*result)[std::string(stream) + "_truncated"] = true;
}

}  // namespace

Status EnforceReplyLimits(const std::string& command, const LimitsConfig& limits,
                          nlohmann::json* result) {
  if (command != "execute_program" || !result->is_object()) return Status::Ok();
  BoundOutput("stdout", limits.max_output_bytes, result);
  BoundOutput("stderr", limits.max_output_bytes, result);

  auto outputs = result->find("outputs");
  if (outputs == result->end()) return Status::Ok();
  size_t size = outputs->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
  if (size <= limits.max_result_bytes) return Status::Ok();
  nlohmann::json details = {{"size", size}, {"limit", limits.max_result_bytes}};
  return Status::Error(ErrorCategory::kFailedPrecondition,
                       fmt::format("result of {} bytes exceeds the limit of {} "
                                   "(limits.max_result_bytes)",
                                   size, limits.max_result_bytes))
      .WithReason("result_too_large")
      .WithDetails(details.dump());
}

}  // namespace corral
