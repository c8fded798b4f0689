#include "manager/worker_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

namespace corral {
namespace {

const Logger kLog("worker_channel");
constexpr size_t kReadChunk = 64 * 1024;

// What a protocol error keeps of its message. Parser messages quote the offending input, and
// the input is the tenant's: a 4 MiB number was kept in the session, logged three times and
// returned by every listing.
constexpr size_t kMaxProtocolMessage = 512;

Status ProtocolError(std::string message) {
  if (message.size() > kMaxProtocolMessage) {
    size_t cut = message.size() - kMaxProtocolMessage;
    message.resize(kMaxProtocolMessage);
    // Never end inside a UTF-8 character.
    while (!message.empty() && (static_cast<unsigned char>(message.back()) & 0xC0) == 0x80) {
      message.pop_back();
      ++cut;
    }
    if (!message.empty() && static_cast<unsigned char>(message.back()) >= 0xC0) {
      message.pop_back();
      ++cut;
    }
    message += fmt::format("... ({} more bytes)", cut);
  }
  return Status::Unavailable("worker protocol error: " + std::move(message))
      .WithReason(std::string(kWorkerProtocolError));
}

Status WorkerExited(std::string message) {
  return Status::Unavailable(std::move(message)).WithReason(std::string(kWorkerExited));
}

Status WallTimeout(std::string_view command) {
  return Status::DeadlineExceeded(fmt::format("worker call `{}` passed its deadline", command))
      .WithReason(std::string(kWallTimeout));
}

Status ChannelClosed() {
  return Status::Unavailable("worker channel closed").WithReason(std::string(kWorkerChannelClosed));
}

// Milliseconds left until `deadline` for poll(): -1 (forever) for time_point::max().
int PollTimeout(std::chrono::steady_clock::time_point deadline) {
  if (deadline == std::chrono::steady_clock::time_point::max()) return -1;
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

// Parses the reply part of a frame that carries a pending id. A reply has exactly one of
// `result` (an object) and `error` (an object with string `type` and `message`).
// Failures are plain messages; the caller makes them protocol errors naming the id.
Result<WorkerReply> ParseReply(const nlohmann::json& frame) {
  auto result = frame.find("result");
  auto error = frame.find("error");
  if ((result == frame.end()) == (error == frame.end())) {
    return Status::InvalidArgument("it must carry exactly one of `result` and `error`");
  }
  WorkerReply reply;
  if (result != frame.end()) {
    if (!result->is_object()) return Status::InvalidArgument("its `result` is not an object");
    reply.ok = true;
    reply.result = *result;
    return reply;
  }
  auto type = error->is_object() ? error->find("type") : error->end();
  auto message = error->is_object() ? error->find("message") : error->end();
  if (!error->is_object() || type == error->end() || !type->is_string() ||
      message == error->end() || !message->is_string()) {
    return Status::InvalidArgument("its `error` is not an object with string `type` and `message`");
  }
  reply.error_type = type->get<std::string>();
  reply.error_message = message->get<std::string>();
  reply.error = *error;
  return reply;
}

}  // namespace

WorkerChannel::WorkerChannel(UniqueFd fd, Options options)
    : options_(std::move(options)), fd_(std::move(fd)) {
  // Non-blocking, so a worker that stops reading cannot hold a writer past its deadline.
  int flags = fcntl(fd_.get(), F_GETFL);
  if (flags < 0 || fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    fault_ = ErrnoStatus("make worker channel non-blocking")
                 .WithReason(std::string(kWorkerChannelClosed));
    return;
  }
  reader_ = std::thread([this] { ReadLoop(); });
}

WorkerChannel::~WorkerChannel() {
  Close();
  if (reader_.joinable()) {
    if (reader_.get_id() == std::this_thread::get_id())
      reader_.detach();
    else
      reader_.join();
  }
}

Result<std::pair<UniqueFd, UniqueFd>> WorkerChannel::MakeSocketPair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
    return ErrnoStatus("create worker channel socketpair");
  }
  return std::pair<UniqueFd, UniqueFd>(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

Result<WorkerReply> WorkerChannel::Call(const std::string& command, nlohmann::json args,
                                        std::chrono::steady_clock::time_point deadline,
                                        const std::string& session_id, bool* delivered) {
  if (delivered != nullptr) *delivered = false;
  uint64_t id;
  {
    std::lock_guard lock(mutex_);
    if (!fault_.ok()) return fault_;
    id = ++last_id_;
    pending_.emplace(id, Pending{});
  }

  nlohmann::json request = {{"id", id}, {"command", command}};
  request["args"] = args.is_null() ? nlohmann::json::object() : std::move(args);
  if (!session_id.empty()) request["session_id"] = session_id;

  Result<std::string> bytes = EncodeFrame(request, options_.max_frame);
  Status written = bytes.ok() ? WriteFrame(*bytes, deadline)
                              : Status(bytes.status()).Context(fmt::format("call `{}`", command));
  if (!written.ok()) {
    std::lock_guard lock(mutex_);
    pending_.erase(id);
    if (closing_) return ChannelClosed();  // the write failed because Close() shut it down
    if (written.reason() == kWallTimeout) return WallTimeout(command);
    if (!fault_.ok()) return fault_;  // the reader saw why first (the worker exited, ...)
    return written;
  }
  if (delivered != nullptr) *delivered = true;

  Result<WorkerReply> reply = Await(id, deadline);
  if (!reply.ok() && reply.status().reason() == kWallTimeout) return WallTimeout(command);
  return reply;
}

Result<WorkerReply> WorkerChannel::Await(uint64_t id,
                                         std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  auto answered = [&] { return pending_.at(id).reply.has_value() || !fault_.ok(); };
  replied_.wait_until(lock, deadline, answered);

  auto it = pending_.find(id);
  std::optional<WorkerReply> reply = std::move(it->second.reply);
  pending_.erase(it);
  if (reply) return std::move(*reply);
  if (!fault_.ok()) return fault_;
  return Status::DeadlineExceeded("deadline").WithReason(std::string(kWallTimeout));
}

void WorkerChannel::SetRequestHandler(RequestHandler handler, std::set<std::string> types) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
  request_types_ = std::move(types);
}

Status WorkerChannel::Send(const nlohmann::json& frame) {
  {
    std::lock_guard lock(mutex_);
    if (!fault_.ok()) return fault_;
  }
  CORRAL_ASSIGN_OR_RETURN(std::string bytes, EncodeFrame(frame, options_.max_frame));
  return WriteFrame(bytes, std::chrono::steady_clock::time_point::max());
}

Status WorkerChannel::WriteFrame(const std::string& bytes,
                                 std::chrono::steady_clock::time_point deadline) {
  std::lock_guard write_lock(write_mutex_);
  size_t done = 0;
  while (done < bytes.size()) {
    // MSG_NOSIGNAL: a worker that died must give the daemon EPIPE, never SIGPIPE.
    ssize_t n = send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return WorkerExited(fmt::format("write to worker: {}", strerror(errno)));
    }
    pollfd p{fd_.get(), POLLOUT, 0};
    int ready = poll(&p, 1, PollTimeout(deadline));
    if (ready < 0 && errno != EINTR) return ErrnoStatus("wait to write to worker");
    if (ready == 0) {
      // Half a frame is on the wire: nothing after it could be framed correctly.
      if (done > 0) {
        Fault(Status::DeadlineExceeded("a request was cut off by its deadline; the channel "
                                       "cannot frame anything after it")
                  .WithReason(std::string(kWallTimeout)));
      }
      return Status::DeadlineExceeded("write").WithReason(std::string(kWallTimeout));
    }
  }
  return Status::Ok();
}

void WorkerChannel::Close() {
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    closing_ = true;
  }
  // Wakes the reader (its read returns end of file) and any writer waiting in poll.
  if (fd_.valid()) shutdown(fd_.get(), SHUT_RDWR);
  if (reader_.joinable() && reader_.get_id() != std::this_thread::get_id()) reader_.join();
  Fault(ChannelClosed());
}

Status WorkerChannel::fault() const {
  std::lock_guard lock(mutex_);
  return fault_;
}

void WorkerChannel::Fault(Status status) {
  std::lock_guard lock(mutex_);
  FaultLocked(std::move(status));
}

void WorkerChannel::FaultLocked(Status status) {
  if (!fault_.ok()) return;
  if (status.reason() == kWorkerProtocolError) {
    kLog.Error(options_.log_context, "{}", status.message());
  } else if (status.reason() == kWorkerExited) {
    kLog.Info(options_.log_context, "{}", status.message());
  }
  fault_ = std::move(status);
  replied_.notify_all();
}

void WorkerChannel::ReadLoop() {
  FrameReader reader(options_.max_frame);
  std::vector<char> buffer(kReadChunk);
  while (true) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      return Fault(WorkerExited(fmt::format("wait for worker: {}", strerror(errno))));
    }
    ssize_t n = read(fd_.get(), buffer.data(), buffer.size());
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n <= 0) {
      bool closing;
      {
        std::lock_guard lock(mutex_);
        closing = closing_;
      }
      if (closing) return;  // Close() records the reason
      std::string why = n < 0 ? strerror(errno) : "end of file";
      if (reader.buffered_bytes() > 0) why += " in the middle of a frame";
      return Fault(WorkerExited(fmt::format("worker channel: {}", why)));
    }

    reader.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
    while (std::optional<Result<nlohmann::json>> frame = reader.Next()) {
      if (!frame->ok()) return Fault(ProtocolError(frame->status().message()));
      if (!Dispatch(**frame)) return;
    }
  }
}

bool WorkerChannel::Dispatch(const nlohmann::json& frame) {
  auto id = frame.find("id");
  bool has_id = id != frame.end() && id->is_number_unsigned();
  auto type = frame.find("type");
  bool has_type = type != frame.end() && type->is_string();

  RequestHandler handler;
  {
    std::lock_guard lock(mutex_);
    bool is_pending = has_id && pending_.count(id->get<uint64_t>()) > 0;
    if (is_pending || !has_type) {
      if (id == frame.end()) {
        FaultLocked(ProtocolError("frame without an `id`"));
        return false;
      }
      if (!has_id) {
        FaultLocked(
            ProtocolError(fmt::format("frame `id` {} is not a non-negative integer", id->dump())));
        return false;
      }
      return DeliverReply(id->get<uint64_t>(), frame);
    }
    handler = handler_;
    if (!request_types_.empty() && request_types_.count(type->get<std::string>()) == 0) {
      handler = nullptr;
    }
  }
  if (!handler) {
    Fault(ProtocolError(fmt::format("unsolicited frame of type `{}`", type->get<std::string>())));
    return false;
  }
  try {
    handler(frame);
  } catch (const std::exception& e) {
    kLog.Error(options_.log_context, "worker request handler failed: {}", e.what());
  }
  return true;
}

// Called with mutex_ held.
bool WorkerChannel::DeliverReply(uint64_t id, const nlohmann::json& frame) {
  auto fail = [&](Status status) {
    FaultLocked(std::move(status));
    return false;
  };
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    if (id > last_id_) return fail(ProtocolError(fmt::format("reply to id {}, never sent", id)));
    return fail(ProtocolError(
        fmt::format("reply to id {}, which is not waiting (stale or duplicate)", id)));
  }
  if (it->second.reply) return fail(ProtocolError(fmt::format("duplicate reply to id {}", id)));

  Result<WorkerReply> reply = ParseReply(frame);
  if (!reply.ok()) {
    return fail(ProtocolError(fmt::format("reply to id {}: {}", id, reply.status().message())));
  }
  it->second.reply = std::move(reply).value();
  replied_.notify_all();
  return true;
}

}  // namespace corral
