// corral-fake-lm: the tests' stand-in model server as a program, so the README's signature
// program example can be run by hand (`build/corral-fake-lm 8000`, then point an endpoint's
// base_url at http://127.0.0.1:8000/v1). Answers as tests/support/fake_lm_server.h describes;
// never a real model. Runs until interrupted.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "tests/support/fake_lm_server.h"

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8000;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before the server's threads start
  corral::testing::FakeLmServer server(port);
  if (server.port() == 0) {
    std::fprintf(stderr, "corral-fake-lm: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  std::fprintf(stderr, "corral-fake-lm: %s (Ctrl-C ends it)\n", server.base_url().c_str());
  int received = 0;
  sigwait(&signals, &received);
  return 0;
}
