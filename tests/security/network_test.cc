// Hostile tenant, network (cases S32-S35 of the security cases).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sandbox/unique_fd.h"
#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

// The host's own IPv4 addresses other than loopback.
std::vector<std::string> HostAddresses() {
  std::vector<std::string> addresses;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return addresses;
  for (ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    auto* in = reinterpret_cast<sockaddr_in*>(entry->ifa_addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    if (std::string(text).rfind("127.", 0) != 0) addresses.push_back(text);
  }
  ::freeifaddrs(list);
  return addresses;
}

// A TCP listener on all host addresses, standing in for the daemon's HTTP port.
struct Listener {
  UniqueFd fd;
  int port = 0;
};

Listener ListenOnAllAddresses() {
  Listener listener;
  listener.fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof address;
  if (::bind(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(listener.fd.get(), 16) != 0 ||
      ::getsockname(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Listener{};
  }
  listener.port = ntohs(address.sin_port);
  return listener;
}

bool HasPendingConnection(int fd) {
  pollfd poll_fd{fd, POLLIN, 0};
  return ::poll(&poll_fd, 1, 0) > 0;
}

TEST_CASE("S32 no route and no name resolution to the outside", "[security][network]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import urllib.error, urllib.request
def fetch(url):
    try:
        urllib.request.urlopen(url, timeout=3).read(1)
        return "OK"
    except urllib.error.URLError as e:
        r = e.reason
        if isinstance(r, socket.gaierror):
            return "gaierror"
        return ename(r.errno) if isinstance(r, OSError) and r.errno else repr(r)
    except OSError as e:
        return ename(e.errno)
obs["urlopen_name"] = fetch("http://example.com/")
obs["urlopen_ip"] = fetch("http://93.184.215.14/")
obs["urlopen_https_ip"] = fetch("https://1.1.1.1/")
try:
    socket.getaddrinfo("example.com", 80)
    obs["getaddrinfo"] = "OK"
except socket.gaierror:
    obs["getaddrinfo"] = "gaierror"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
query = b"\x12\x34\x01\x00\x00\x01" + bytes(6)  # a DNS header asking one question
obs["udp_dns"] = attempt(u.sendto, query, ("8.8.8.8", 53))
obs["udp_broadcast"] = attempt(lambda: (u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1),
                                        u.sendto(b"x", ("255.255.255.255", 53))))
t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t6.settimeout(3)
obs["tcp6"] = attempt(t6.connect, ("2606:4700:4700::1111", 443))
obs["interfaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
obs["routes"] = open("/proc/net/route").read().count("\n") - 1
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.Obs("urlopen_name") == "gaierror");
  CHECK(result.Obs("getaddrinfo") == "gaierror");
  CHECK(result.Obs("urlopen_ip") == "ENETUNREACH");
  CHECK(result.Obs("urlopen_https_ip") == "ENETUNREACH");
  CHECK(result.Obs("udp_dns") == "ENETUNREACH");
  CHECK(result.Obs("udp_broadcast") == "ENETUNREACH");
  CHECK(result.Obs("tcp6") == "ENETUNREACH");
  CHECK(result.observations["interfaces"] == nlohmann::json({"lo"}));
  CHECK(result.observations["routes"] == 0);
}

TEST_CASE("S33 the host's ports on loopback and its own addresses are unreachable",
          "[security][network]") {
  CORRAL_REQUIRE_SANDBOX();
  Listener listener = ListenOnAllAddresses();
  REQUIRE(listener.port > 0);
  std::vector<std::string> addresses = HostAddresses();
  // An abstract unix socket on the host: abstract names belong to the network namespace.
  std::string abstract_name = "corral-sec-" + UniqueTag();
  UniqueFd unix_listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un unix_address{};
  unix_address.sun_family = AF_UNIX;
  abstract_name.copy(unix_address.sun_path + 1, sizeof unix_address.sun_path - 2);
  socklen_t unix_length = offsetof(sockaddr_un, sun_path) + 1 + abstract_name.size();
  REQUIRE(::bind(unix_listener.get(), reinterpret_cast<sockaddr*>(&unix_address), unix_length) ==
          0);
  REQUIRE(::listen(unix_listener.get(), 4) == 0);

  RunOptions options;
  options.vars = {{"PORT", std::to_string(listener.port)},
                  {"HOST_ADDRESSES", nlohmann::json(addresses).dump()},
                  {"ABSTRACT", abstract_name}};
  SandboxResult result = RunPython(R"PY(
def tcp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    return attempt(s.connect, (host, port))
obs["loopback"] = tcp("127.0.0.1", int(PORT))
obs["loopback_other"] = tcp("127.0.0.53", 53)
obs["host"] = {a: tcp(a, int(PORT)) for a in json.loads(HOST_ADDRESSES)}
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
obs["abstract"] = attempt(u.connect, "\0" + ABSTRACT)
# The sandbox's own loopback works: it can talk to itself.
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
obs["own_loopback"] = tcp("127.0.0.1", server.getsockname()[1])
emit()
)PY",
                                   options);
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.Obs("loopback") == "ECONNREFUSED");
  CHECK(result.Obs("loopback_other") == "ECONNREFUSED");
  for (const std::string& address : addresses) {
    INFO("host address " << address);
    CHECK(result.observations["host"].value(address, std::string("<missing>")) == "ENETUNREACH");
  }
  CHECK(result.Obs("abstract") == "ECONNREFUSED");
  CHECK(result.Obs("own_loopback") == "OK");
  CHECK_FALSE(HasPendingConnection(listener.fd.get()));
  CHECK_FALSE(HasPendingConnection(unix_listener.get()));

  // The probe itself works: from the host the same port answers.
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in loopback{};
  loopback.sin_family = AF_INET;
  loopback.sin_port = htons(listener.port);
  loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(client.get(), reinterpret_cast<sockaddr*>(&loopback), sizeof loopback) == 0);
}

TEST_CASE("S34 raw and packet sockets and netlink route changes are refused",
          "[security][network]") {
  CORRAL_REQUIRE_SANDBOX();
  // Raw INET sockets need CAP_NET_RAW, which no sandbox process has: the kernel refuses them
  // with EPERM whether or not the filter does, so they are not confirmed as the filter's.
  auto kernel_refused = [](std::string name, std::string expr) {
    return Probe{std::move(name), 41, std::move(expr), "EPERM", false};
  };
  ExpectRefused({
      kernel_refused("raw_icmp", "sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"),
      kernel_refused("raw_ip", "sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)"),
      kernel_refused("raw_icmp6", "sock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)"),
      kernel_refused("inet_sock_packet", "sock(socket.AF_INET, 10, 0x0300)"),
      Probe{"packet_raw", 41, "sock(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)"},
      Probe{"packet_dgram", 41, "sock(socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300)"},
      SyscallProbe("packet_raw_high_bits", 41, {(1L << 32) | 17, 3, 0x0300}),
  });

  // Route, address and link changes over netlink are answered with an error, never applied.
  SandboxResult result = RunPython(R"PY(
import struct
def netlink_change(msg_type, body):
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    except OSError as e:
        return ename(e.errno)
    flags = 0x1 | 0x4 | 0x400 | 0x200  # REQUEST | ACK | CREATE | EXCL
    s.send(struct.pack("IHHII", 16 + len(body), msg_type, flags, 1, 0) + body)
    reply = s.recv(4096)
    code = struct.unpack("i", reply[16:20])[0]
    return "OK" if code == 0 else ename(-code)
oif = struct.pack("HHI", 8, 4, 1)  # RTA_OIF = lo
route = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0) + oif
obs["route_add"] = netlink_change(24, route)  # RTM_NEWROUTE
local = struct.pack("HH4s", 8, 2, socket.inet_aton("10.66.0.1"))  # IFA_LOCAL
address = struct.pack("BBBBI", socket.AF_INET, 24, 0, 0, 1) + local
obs["address_add"] = netlink_change(20, address)  # RTM_NEWADDR
link = struct.pack("BBHiII", socket.AF_UNSPEC, 0, 0, 1, 0, 1)  # ifi_change IFF_UP, flags 0
obs["link_down"] = netlink_change(16, link)  # RTM_NEWLINK
obs["routes_after"] = open("/proc/net/route").read().count("\n") - 1
emit()
)PY");
  INFO(result.Describe());
  CHECK(result.Obs("route_add") == "EPERM");
  CHECK(result.Obs("address_add") == "EPERM");
  CHECK(result.Obs("link_down") == "EPERM");
  CHECK(result.observations["routes_after"] == 0);
}

TEST_CASE("S35 AF_VSOCK and AF_ALG sockets are refused", "[security][network]") {
  CORRAL_REQUIRE_SANDBOX();
  // Natively both families open fine for an unprivileged user: a refusal is the filter's.
  ExpectRefused({
      Probe{"vsock_stream", 41, "sock(40, socket.SOCK_STREAM)"},
      Probe{"vsock_dgram", 41, "sock(40, socket.SOCK_DGRAM)"},
      Probe{"vsock_seqpacket", 41, "sock(40, socket.SOCK_SEQPACKET)"},
      Probe{"alg_seqpacket", 41, "sock(38, socket.SOCK_SEQPACKET)"},
      Probe{"vsock_cloexec", 41, "sock(40, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)"},
      // The kernel reads the family as an int: high bits must not slip past the filter.
      SyscallProbe("vsock_high_bits", 41, {(1L << 32) | 40, 1, 0}),
      SyscallProbe("alg_high_bits", 41, {(1L << 32) | 38, 5, 0}),
  });
}

}  // namespace
}  // namespace corral::testing
