#include "manager/http_connections.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "sandbox/log.h"

namespace corral {
namespace {

using Clock = std::chrono::steady_clock;

const Logger kLog("http");

// At most one "closed slow connections" warning per interval: under attack there is one per
// slow connection, and a line each would flood the log the attacker wants to hide in.
constexpr std::chrono::seconds kSlowReportInterval{10};

// A thread past the warm count that has had no connection for this long exits.
constexpr std::chrono::seconds kIdleThreadLinger{30};

// Waits for `events` on `fd`; true when they (or an error or hang-up) came before `timeout`.
bool WaitFor(int fd, short events, std::chrono::milliseconds timeout) {
  struct pollfd entry {
    fd, events, 0
  };
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int ready = poll(&entry, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready > 0) return true;
    if (ready == 0 || errno != EINTR) return false;
  }
}

void AddressOf(const sockaddr_storage& address, socklen_t length, std::string& ip, int& port) {
  char host[NI_MAXHOST] = {};
  char service[NI_MAXSERV] = {};
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof(host), service,
                  sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return;
  }
  ip = host;
  port = std::atoi(service);
}

}  // namespace

bool WaitReadable(int fd, std::chrono::milliseconds timeout) {
  return WaitFor(fd, POLLIN, timeout);
}

// --- ConnectionWatchdog ------------------------------------------------------------------

thread_local ConnectionWatchdog::Connection* ConnectionWatchdog::current_ = nullptr;

ConnectionWatchdog::ConnectionWatchdog(std::chrono::milliseconds request_timeout)
    : request_timeout_(request_timeout), thread_([this] { Run(); }) {}

ConnectionWatchdog::~ConnectionWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

ConnectionWatchdog::Registration::Registration(ConnectionWatchdog* watchdog, int fd) {
  std::lock_guard<std::mutex> lock(watchdog->mutex_);
  watchdog->connections_.push_back(Connection{watchdog, fd});
  current_ = &watchdog->connections_.back();
  current_->waiting_since = Clock::now();
}

// Under the mutex, so the watchdog never shuts down a descriptor after its owner closed it
// (the number may already name another connection).
ConnectionWatchdog::Registration::~Registration() {
  ConnectionWatchdog* watchdog = current_->owner;
  std::lock_guard<std::mutex> lock(watchdog->mutex_);
  watchdog->connections_.remove_if([](const Connection& c) { return &c == current_; });
  current_ = nullptr;
}

ConnectionWatchdog::HandlerScope::HandlerScope() {
  SetInHandler(true);
}

ConnectionWatchdog::HandlerScope::~HandlerScope() {
  SetInHandler(false);
}

void ConnectionWatchdog::AwaitRequest() {
  SetInHandler(false);
}

void ConnectionWatchdog::SetInHandler(bool in_handler) {
  if (current_ == nullptr) return;
  std::lock_guard<std::mutex> lock(current_->owner->mutex_);
  current_->in_handler = in_handler;
  current_->waiting_since = Clock::now();
}

void ConnectionWatchdog::ShutdownWaiting() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Connection& connection : connections_) {
    if (connection.in_handler || connection.shut_down) continue;
    shutdown(connection.fd, SHUT_RDWR);
    connection.shut_down = true;
  }
}

// A deadline only moves later (registration and leaving a handler start it at "now"), so the
// thread sleeps until the earliest one it saw and needs no wake-up except to stop.
void ConnectionWatchdog::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    Clock::time_point now = Clock::now();
    Clock::time_point next = now + request_timeout_;
    size_t closed = ShutdownExpired(now, &next);
    if (closed > 0 || unreported_ > 0) {
      lock.unlock();
      ReportSlow(closed, /*flush=*/false);
      lock.lock();
    }
    wake_.wait_until(lock, next, [this] { return stopping_; });
  }
  lock.unlock();
  ReportSlow(0, /*flush=*/true);
}

size_t ConnectionWatchdog::ShutdownExpired(Clock::time_point now, Clock::time_point* next) {
  size_t closed = 0;
  for (Connection& connection : connections_) {
    if (connection.in_handler || connection.shut_down) continue;
    Clock::time_point deadline = connection.waiting_since + request_timeout_;
    if (deadline > now) {
      *next = std::min(*next, deadline);
      continue;
    }
    // The owner thread sees EOF (or an error) in its read and closes the descriptor.
    shutdown(connection.fd, SHUT_RDWR);
    connection.shut_down = true;
    ++closed;
  }
  return closed;
}

void ConnectionWatchdog::ReportSlow(size_t closed, bool flush) {
  unreported_ += closed;
  Clock::time_point now = Clock::now();
  if (unreported_ == 0 || (!flush && now - last_report_ < kSlowReportInterval)) return;
  kLog.Warn(kNoSession,
            "closed {} connection(s) that sent no complete request within "
            "http.request_timeout ({} ms): slow clients (slow-loris)",
            unreported_, request_timeout_.count());
  unreported_ = 0;
  last_report_ = now;
}

// --- ElasticTaskQueue --------------------------------------------------------------------

ElasticTaskQueue::ElasticTaskQueue(size_t warm_threads, size_t max_threads)
    : warm_threads_(warm_threads), max_threads_(std::max(warm_threads, max_threads)) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < warm_threads_; ++i) StartThread();
}

ElasticTaskQueue::~ElasticTaskQueue() {
  shutdown();
}

void ElasticTaskQueue::enqueue(std::function<void()> task) {
  JoinExited();
  std::lock_guard<std::mutex> lock(mutex_);
  tasks_.push_back(std::move(task));
  if (tasks_.size() > idle_ && threads_.size() < max_threads_) {
    StartThread();
  } else if (tasks_.size() > idle_ && !warned_full_) {
    // Past the cap a connection waits for a thread; the watchdog bounds how long each slow
    // connection holds one, so the wait is bounded too.
    kLog.Warn(kNoSession, "all {} HTTP threads (http.max_connections) are busy: connections queue",
              max_threads_);
    warned_full_ = true;
  }
  has_work_.notify_one();
}

void ElasticTaskQueue::StartThread() {
  try {
    std::thread thread([this] { Work(); });
    std::thread::id id = thread.get_id();
    threads_.emplace(id, std::move(thread));
  } catch (const std::system_error& e) {
    // The task stays queued for a running thread; the warm threads never exit.
    kLog.Warn(kNoSession, "start an HTTP thread: {}", e.what());
  }
}

void ElasticTaskQueue::Work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ++idle_;
    bool woken = has_work_.wait_for(lock, kIdleThreadLinger,
                                    [this] { return !tasks_.empty() || shutting_down_; });
    --idle_;
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // closes what the task owns before the thread counts as idle
      lock.lock();
      continue;
    }
    if (shutting_down_) break;
    if (!woken && threads_.size() > warm_threads_) break;
  }
  if (threads_.size() <= max_threads_ / 2) warned_full_ = false;
  auto self = threads_.find(std::this_thread::get_id());
  exited_.push_back(std::move(self->second));
  threads_.erase(self);
  thread_exited_.notify_all();
}

void ElasticTaskQueue::JoinExited() {
  std::vector<std::thread> exited;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    exited.swap(exited_);
  }
  for (std::thread& thread : exited) thread.join();
}

void ElasticTaskQueue::shutdown() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    shutting_down_ = true;
    has_work_.notify_all();
    thread_exited_.wait(lock, [this] { return threads_.empty(); });
  }
  JoinExited();
}

// --- SocketStream ------------------------------------------------------------------------

SocketStream::SocketStream(int fd, std::chrono::milliseconds read_timeout,
                           std::chrono::milliseconds write_timeout)
    : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout), buffer_(kBufferSize) {}

bool SocketStream::is_readable() const {
  return buffer_begin_ < buffer_end_ || WaitFor(fd_, POLLIN, read_timeout_);
}

bool SocketStream::is_writable() const {
  return WaitFor(fd_, POLLOUT, write_timeout_);
}

ssize_t SocketStream::read(char* ptr, size_t size) {
  if (buffer_begin_ == buffer_end_) {
    if (!WaitFor(fd_, POLLIN, read_timeout_)) return -1;
    ssize_t got;
    do {
      got = recv(fd_, buffer_.data(), buffer_.size(), 0);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) return got;
    buffer_begin_ = 0;
    buffer_end_ = static_cast<size_t>(got);
  }
  size_t count = std::min(size, buffer_end_ - buffer_begin_);
  std::memcpy(ptr, buffer_.data() + buffer_begin_, count);
  buffer_begin_ += count;
  return static_cast<ssize_t>(count);
}

// MSG_NOSIGNAL: a client that hung up must cost an EPIPE, not a SIGPIPE.
ssize_t SocketStream::write(const char* ptr, size_t size) {
  if (!WaitFor(fd_, POLLOUT, write_timeout_)) return -1;
  ssize_t sent;
  do {
    sent = send(fd_, ptr, size, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

void SocketStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    AddressOf(address, length, ip, port);
  }
}

void SocketStream::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    AddressOf(address, length, ip, port);
  }
}

}  // namespace corral
