// S53, slow-loris: hundreds of connections that send their request head a byte at a time.
// Served clients must keep working while they drip, and the daemon must end every slow one.
// The drip runs on a few threads that each poll many non-blocking sockets, as an attacker's
// would; 500 client threads would test the machine, not the daemon.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/support/daemon_harness.h"

namespace corral::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kSlowConnections = 500;
constexpr int kDripThreads = 4;
constexpr auto kDripInterval = 500ms;
// Never finished: the blank line that ends a request head never comes.
constexpr char kSlowHead[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
// With http.request_timeout=2s every slow connection must be gone well within this, once the
// served client is done (the bound keeps the test finite, it measures nothing).
constexpr auto kCloseBound = 15s;
// Rounds of the drip at most, whatever happens: the test stops by itself.
constexpr int kMaxRounds = 240;

// The test process holds every slow socket at once.
void RaiseOpenFileLimit(rlim_t needed) {
  struct rlimit limit {};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur >= needed) return;
  REQUIRE(limit.rlim_max >= needed);
  limit.rlim_cur = needed;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &limit) == 0);
}

// A connected non-blocking socket to the daemon, or -1.
int ConnectNonBlocking(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int done = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  if (done != 0 && errno == EINPROGRESS) {
    // A full listen backlog drops SYNs and the kernel retries them: wait generously.
    struct pollfd entry {
      fd, POLLOUT, 0
    };
    int error = 0;
    socklen_t length = sizeof(error);
    bool connected = poll(&entry, 1, 30000) == 1 &&
                     getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    done = connected ? 0 : -1;
  }
  if (done != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True once the server has ended the connection: EOF or a reset. A response (the server may
// answer 408 or 400 first) is read and dropped.
bool ClosedByServer(int fd) {
  char buffer[512];
  for (;;) {
    ssize_t got = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (got > 0) continue;
    if (got == 0) return true;
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }
}

struct SlowConnection {
  int fd = -1;
  size_t sent = 0;
  bool closed = false;
};

struct DripShared {
  int port = 0;
  std::atomic<int> connected{0};
  std::atomic<int> connect_failures{0};
  std::atomic<int> closed{0};
  std::atomic<bool> client_done{false};
};

// One drip step for one connection: notice a close, else send the next byte.
void DripOnce(SlowConnection& connection) {
  if (ClosedByServer(connection.fd)) {
    connection.closed = true;
    return;
  }
  if (connection.sent >= std::strlen(kSlowHead)) return;
  ssize_t sent = send(connection.fd, kSlowHead + connection.sent, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent == 1) {
    ++connection.sent;
  } else if (errno == EPIPE || errno == ECONNRESET) {
    connection.closed = true;
  }
}

// One attacker thread: opens its share of connections, then drips a byte into each every
// kDripInterval until the server has closed them all, or kCloseBound after the served client
// finished, or kMaxRounds.
void Drip(DripShared* shared, int count) {
  std::vector<SlowConnection> connections;
  for (int i = 0; i < count; ++i) {
    int fd = ConnectNonBlocking(shared->port);
    if (fd < 0) {
      ++shared->connect_failures;
      continue;
    }
    connections.push_back(SlowConnection{fd});
    ++shared->connected;
  }

  Clock::time_point give_up = Clock::time_point::max();
  size_t open = connections.size();
  for (int round = 0; round < kMaxRounds && open > 0 && Clock::now() < give_up; ++round) {
    for (SlowConnection& connection : connections) {
      if (connection.closed) continue;
      DripOnce(connection);
      if (connection.closed) {
        --open;
        ++shared->closed;
      }
    }
    if (shared->client_done && give_up == Clock::time_point::max()) {
      give_up = Clock::now() + kCloseBound;
    }
    std::this_thread::sleep_for(kDripInterval);
  }
  for (SlowConnection& connection : connections) close(connection.fd);
}

}  // namespace

TEST_CASE(
    "daemon: S53 slow-loris, 500 dripping connections are cut while served clients "
    "keep working (serial)") {
  RaiseOpenFileLimit(kSlowConnections + 256);
  auto daemon = Daemon::Start({.overrides = {"http.request_timeout=2s"}});

  DripShared shared;
  shared.port = daemon->port();
  std::vector<std::thread> drippers;
  for (int i = 0; i < kDripThreads; ++i) {
    drippers.emplace_back(Drip, &shared, kSlowConnections / kDripThreads);
  }
  // Bounded: each connect waits at most 30 s, so this ends.
  while (shared.connected + shared.connect_failures < kSlowConnections) {
    std::this_thread::sleep_for(50ms);
  }

  // The served client: its own generous timeouts, no timing assertion.
  httplib::Client client("127.0.0.1", daemon->port());
  client.set_connection_timeout(10s);
  client.set_read_timeout(10s);
  client.set_write_timeout(10s);
  std::vector<int> statuses;
  for (int i = 0; i < 20; ++i) {
    auto response = client.Get(i % 2 == 0 ? "/healthz" : "/v1/sessions");
    statuses.push_back(response ? response->status : -static_cast<int>(response.error()));
  }
  shared.client_done = true;
  for (std::thread& dripper : drippers) dripper.join();

  INFO("daemon log:\n" << daemon->log());
  CHECK(shared.connect_failures == 0);
  CHECK(statuses == std::vector<int>(20, 200));
  CHECK(shared.closed == shared.connected);
  // The daemon is still whole after the attack.
  CHECK(daemon->Get("/healthz").status == 200);
}

// The deadline is for delivering a request, not for answering it: a call that runs past it is
// answered, and a keep-alive connection idle past it is closed after its response.
TEST_CASE("daemon: http.request_timeout spares a long call and closes an idle keep-alive") {
  auto daemon = Daemon::Start({.overrides = {"http.request_timeout=1s"}});
  std::string session = daemon->CreateSession();
  daemon->CreatePythonProgram(session, "slow",
                              "import time\ndef forward():\n    time.sleep(3)\n    return 7\n");
  HttpResult slow = daemon->Execute(session, "slow");
  CHECK(slow.status == 200);
  CHECK(slow.json["outputs"] == 7);

  int fd = ConnectNonBlocking(daemon->port());
  REQUIRE(fd >= 0);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  // Read the response, then wait (bounded) for the server to end the idle connection.
  std::string received;
  bool closed = false;
  struct pollfd entry {
    fd, POLLIN, 0
  };
  while (!closed && poll(&entry, 1, 15000) == 1) {
    char buffer[512];
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got > 0) received.append(buffer, static_cast<size_t>(got));
    closed = got == 0 || (got < 0 && errno == ECONNRESET);
  }
  close(fd);
  CHECK(received.starts_with("HTTP/1.1 200"));
  CHECK(closed);
}

}  // namespace corral::testing
