// How the HTTP adapter holds its connections, built against slow clients (S53: hundreds of
// connections that send their request a byte at a time). Three parts:
//
//   - ConnectionWatchdog: one thread that ends every connection which has waited longer than
//     `http.request_timeout` for its request to arrive (request line, headers and body), and
//     every keep-alive connection idle that long. A per-read timeout alone cannot do this: a
//     client that sends one byte per read timeout keeps a connection, and its thread, forever.
//     Time spent in a route handler never counts: a long call is not a slow client.
//   - ElasticTaskQueue: runs each connection on an idle thread or a new one, up to
//     `http.max_connections`, so a served client never waits in a queue behind slow ones.
//   - SocketStream: the httplib::Stream of one connection, with poll-based per-read and
//     per-write timeouts (poll, never select: descriptors pass 1024 under load).
//
// Ending a connection is shutdown(2), never close(2): the serving thread owns the descriptor
// and closes it; closing it under that thread could hand its number to a new connection while
// the old thread still reads from it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

namespace corral {

class ConnectionWatchdog {
 public:
  explicit ConnectionWatchdog(std::chrono::milliseconds request_timeout);
  ~ConnectionWatchdog();  // stops and joins the watchdog thread
  ConnectionWatchdog(const ConnectionWatchdog&) = delete;
  ConnectionWatchdog& operator=(const ConnectionWatchdog&) = delete;

  // Watches the connection `fd` while the calling thread serves it: registered on construction
  // (waiting for its first request from now), unregistered on destruction, which must come
  // before the descriptor is closed. Makes it the thread's current connection.
  class Registration {
   public:
    Registration(ConnectionWatchdog* watchdog, int fd);
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
  };

  // The calling thread's current connection enters a route handler for its scope (exempt from
  // the deadline), and waits for its next request from the scope's end. No-op on a thread that
  // serves no registered connection.
  class HandlerScope {
   public:
    HandlerScope();
    ~HandlerScope();
    HandlerScope(const HandlerScope&) = delete;
    HandlerScope& operator=(const HandlerScope&) = delete;
  };

  // The calling thread's current connection waits for its next request from now (after a
  // response is written, so writing it never counts against the next request).
  static void AwaitRequest();

  // Ends every connection that is not in a handler now (the daemon is stopping).
  void ShutdownWaiting();

 private:
  struct Connection {
    ConnectionWatchdog* owner;
    int fd;
    bool in_handler = false;
    bool shut_down = false;
    std::chrono::steady_clock::time_point waiting_since;
  };

  static void SetInHandler(bool in_handler);
  void Run();
  // Shuts down expired connections; returns how many, and the next deadline in `next`.
  size_t ShutdownExpired(std::chrono::steady_clock::time_point now,
                         std::chrono::steady_clock::time_point* next);
  // Logs the closures not yet reported, at most once per interval unless `flush`.
  void ReportSlow(size_t closed, bool flush);

  static thread_local Connection* current_;

  const std::chrono::milliseconds request_timeout_;
  std::mutex mutex_;  // guards connections_ and stopping_ (and each Connection's fields)
  std::condition_variable wake_;
  std::list<Connection> connections_;
  bool stopping_ = false;

  // Watchdog thread only: slow connections closed since the last warning, and its time.
  size_t unreported_ = 0;
  std::chrono::steady_clock::time_point last_report_;

  std::thread thread_;  // last: starts once the members above exist
};

// An httplib task queue that grows: a task runs on an idle thread, else on a new one while
// fewer than `max_threads` run; past that it waits in arrival order for a thread to free up.
// Threads idle for a while exit down to `warm_threads`, which start with the queue and stay.
//
// Thread safety: enqueue() from the accept thread; shutdown() once, after the last enqueue().
class ElasticTaskQueue : public httplib::TaskQueue {
 public:
  ElasticTaskQueue(size_t warm_threads, size_t max_threads);
  ~ElasticTaskQueue() override;

  void enqueue(std::function<void()> task) override;
  // Runs every task already queued, then joins every thread.
  void shutdown() override;

 private:
  void StartThread();  // mutex_ held
  void Work();
  void JoinExited();

  const size_t warm_threads_;
  const size_t max_threads_;
  std::mutex mutex_;  // guards every member below
  std::condition_variable has_work_;
  std::condition_variable thread_exited_;
  std::deque<std::function<void()>> tasks_;
  std::map<std::thread::id, std::thread> threads_;  // running threads
  std::vector<std::thread> exited_;                 // finished, not yet joined
  size_t idle_ = 0;
  bool shutting_down_ = false;
  bool warned_full_ = false;
};

// The stream of one accepted connection. Each read (write) waits at most `read_timeout`
// (`write_timeout`) for the socket; reads are buffered, since httplib reads headers bytewise.
class SocketStream : public httplib::Stream {
 public:
  SocketStream(int fd, std::chrono::milliseconds read_timeout,
               std::chrono::milliseconds write_timeout);

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  int socket() const override { return fd_; }

 private:
  static constexpr size_t kBufferSize = 4096;

  const int fd_;
  const std::chrono::milliseconds read_timeout_;
  const std::chrono::milliseconds write_timeout_;
  std::vector<char> buffer_;
  size_t buffer_begin_ = 0;
  size_t buffer_end_ = 0;
};

// Waits until `fd` is readable (or at EOF or in error), at most `timeout`.
bool WaitReadable(int fd, std::chrono::milliseconds timeout);

}  // namespace corral
