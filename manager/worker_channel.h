// The daemon's end of one worker's protocol channel: framed JSON over a socketpair (see
// manager/frame.h and ARCHITECTURE.md "The worker protocol").
//
// The worker runs tenant code, so everything it sends is hostile input. A frame that is
// oversized, malformed, a reply to an id that is not waiting (never sent, already answered, or
// abandoned after a timeout) or a reply of the wrong shape is a fault of that worker: the
// channel becomes faulted, every pending and later call fails with reason
// `worker_protocol_error` naming what was wrong, and the owner is expected to kill the worker.
// A reply is only ever delivered to the call whose id it carries, so once anything is doubtful
// no reply is delivered at all. Unknown extra fields in a reply are ignored.
//
// Threads: each channel runs one reader thread that reads, cuts frames and wakes callers (a
// shared epoll loop may replace it when workers become many). Call(), Send(), fault() and
// Close() may be called from any thread. Writes are serialized, so frames never interleave.
// The request handler runs on the reader thread: it must not block for long, and must not call
// Close() or destroy the channel; it may call Send().
//
// Ownership: the channel owns its descriptor (the daemon's end of the socketpair) and its
// reader thread. Close() may run while calls are pending: they fail with reason
// `worker_channel_closed`. The owner must not destroy the channel while another thread is still
// inside one of its methods; the destructor closes, joins the reader and fails pending calls.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "manager/frame.h"
#include "sandbox/log.h"
#include "sandbox/status.h"
#include "sandbox/unique_fd.h"

namespace corral {

// Status reasons the channel fails calls with.
inline constexpr std::string_view kWorkerProtocolError = "worker_protocol_error";
inline constexpr std::string_view kWorkerExited = "worker_exited";
inline constexpr std::string_view kWorkerChannelClosed = "worker_channel_closed";
inline constexpr std::string_view kWallTimeout = "wall_timeout";

// What the worker answered. A reply with `error` is still a successful Call(): the worker is
// healthy and refused or failed the command (program_error, invalid_inputs, ...).
struct WorkerReply {
  bool ok = false;
  nlohmann::json result;      // the `result` object when ok
  std::string error_type;     // error.type when !ok
  std::string error_message;  // error.message when !ok
  nlohmann::json error;       // the whole `error` object (traceback, stdout, ...) when !ok
};

struct WorkerChannelOptions {
  size_t max_frame = kDefaultMaxFrame;
  LogContext log_context;  // names the session in log lines
};

class WorkerChannel {
 public:
  using Options = WorkerChannelOptions;
  // Called on the reader thread with each frame the worker initiates (it carries a "type").
  using RequestHandler = std::function<void(const nlohmann::json& frame)>;

  // Takes the daemon's end of the channel and starts the reader thread.
  explicit WorkerChannel(UniqueFd fd, Options options = {});
  ~WorkerChannel();
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;

  // An AF_UNIX stream socketpair, both ends close-on-exec: first for the daemon, second for
  // the worker (the launcher passes it explicitly, as fd 3).
  static Result<std::pair<UniqueFd, UniqueFd>> MakeSocketPair();

  // Sends one request and waits for its reply until `deadline`. On expiry: DeadlineExceeded
  // with reason wall_timeout; the worker may still be running the command, so the caller kills
  // it (a late reply would fault the channel). The deadline also bounds the write, so a worker
  // that stops reading cannot hold the caller; a request cut off half-written leaves the channel
  // failed with wall_timeout. `session_id` is sent when not empty (pool mode). A reply with an
  // `error` is a success here: the worker is healthy and refused or failed the command. On
  // failure, `*delivered` (when given) says whether the whole request reached the worker: a
  // request that never did can safely run elsewhere.
  Result<WorkerReply> Call(const std::string& command, nlohmann::json args,
                           std::chrono::steady_clock::time_point deadline,
                           const std::string& session_id = "", bool* delivered = nullptr);

  // Frames the worker starts (requests for a language model, ...). Without a handler such a
  // frame is a protocol fault, and so is one whose type is not in `types` when that is not
  // empty. Set it before the worker can send one.
  void SetRequestHandler(RequestHandler handler, std::set<std::string> types = {});
  // Writes a frame that answers a worker-initiated request.
  Status Send(const nlohmann::json& frame);

  // Stops the reader, fails pending calls, closes the descriptor. Idempotent.
  void Close();
  // Ok while healthy; otherwise why the channel stopped (protocol error, exit, close).
  Status fault() const;

 private:
  struct Pending {
    std::optional<WorkerReply> reply;
  };

  void ReadLoop();
  // Returns false when the frame faulted the channel.
  bool Dispatch(const nlohmann::json& frame);
  bool DeliverReply(uint64_t id, const nlohmann::json& frame);  // mutex_ held
  void Fault(Status status);
  void FaultLocked(Status status);  // mutex_ held
  Status WriteFrame(const std::string& bytes, std::chrono::steady_clock::time_point deadline);
  Result<WorkerReply> Await(uint64_t id, std::chrono::steady_clock::time_point deadline);

  const Options options_;
  UniqueFd fd_;  // non-blocking; closed only after the reader has been joined

  std::mutex write_mutex_;  // guards writes to fd_, so frames never interleave

  mutable std::mutex mutex_;  // guards every member below
  std::condition_variable replied_;
  uint64_t last_id_ = 0;                 // the highest id sent
  std::map<uint64_t, Pending> pending_;  // calls waiting for a reply
  Status fault_;                         // sticky once not ok
  bool closing_ = false;
  RequestHandler handler_;
  std::set<std::string> request_types_;  // empty: every type goes to handler_

  std::thread reader_;  // started last, after every member above exists
};

}  // namespace corral
