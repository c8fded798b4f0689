// Network: the sandbox has its own network namespace with nothing in it but loopback, brought
// up when the policy asks (local sockets between the sandbox's own processes). The host's
// interfaces and the daemon's ports are never reachable.
#pragma once

namespace corral {

// Child: sets IFF_UP on "lo" through an AF_INET datagram socket. Async-signal-safe.
// Returns false with errno set on failure.
bool BringLoopbackUp();

}  // namespace corral
