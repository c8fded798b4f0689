#include "manager/http_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "manager/http_connections.h"
#include "manager/http_errors.h"
#include "sandbox/log.h"

namespace corral {
namespace {

const Logger kLog("http");

// Every path goes to the one dispatcher: the route table decides 404 and 405 itself.
constexpr char kAnyPath[] = "[\\s\\S]*";

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool MatchPattern(const std::string& pattern, const std::string& path,
                  std::map<std::string, std::string>* params) {
  std::vector<std::string> want = SplitPath(pattern);
  std::vector<std::string> got = SplitPath(path);
  if (want.size() != got.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string& segment = want[i];
    if (segment.size() > 2 && segment.front() == '{' && segment.back() == '}') {
      if (got[i].empty()) return false;
      (*params)[segment.substr(1, segment.size() - 2)] = got[i];
    } else if (segment != got[i]) {
      return false;
    }
  }
  return true;
}

// httplib answers some requests itself (413 past the body limit, 400 for a bad request line):
// give those the one error shape too.
Status StatusForBareCode(int code) {
  switch (code) {
    case 413:
      return Status::TooLarge("request body is larger than limits.max_request_bytes")
          .WithReason("payload_too_large");
    case 404:
      return Status::NotFound("no such route").WithReason("route_not_found");
    case 408:
      return Status::InvalidArgument("request timed out").WithReason("request_timeout");
    case 414:
      return Status::TooLarge("request URI is too long").WithReason("uri_too_long");
    default:
      break;
  }
  if (code >= 500) return Status::Internal(fmt::format("HTTP {}", code));
  return Status::InvalidArgument(fmt::format("malformed HTTP request ({})", code))
      .WithReason("bad_request");
}

void WriteResponse(const ApiResponse& reply, httplib::Response& res) {
  res.status = reply.status;
  if (!reply.retry_after.empty()) res.set_header("Retry-After", reply.retry_after);
  if (!reply.body.empty()) res.set_content(reply.body, reply.content_type.c_str());
}

}  // namespace

// httplib's own connection loop gives no hook to watch a connection as a whole, so this
// server runs the loop itself (process_request is httplib's, per request) with the watchdog
// registered around it, over a SocketStream that never uses select().
class GuardedServer : public httplib::Server {
 public:
  GuardedServer(const HttpConfig& config, ConnectionWatchdog* watchdog)
      : config_(config), watchdog_(watchdog) {}

  // httplib listens with a backlog of 5: a burst of connections (an attack, or just many
  // clients) overflows it, and the kernel drops the SYNs of served clients too, costing each
  // a retransmission (1 s, then 3 s, ...). listen(2) again on the bound socket widens it.
  Status WidenBacklog() {
    if (::listen(svr_sock_, SOMAXCONN) != 0) return ErrnoStatus("listen (backlog {})", SOMAXCONN);
    return Status::Ok();
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    bool served = ServeConnection(sock);
    shutdown(sock, SHUT_RDWR);
    close(sock);
    return served;
  }

  // Requests one by one, up to `keep_alive_max`, while the server runs. Waiting for a request
  // is bounded twice: here, and by the watchdog, which also bounds a request that trickles in.
  bool ServeConnection(int sock) {
    ConnectionWatchdog::Registration registration(watchdog_, sock);
    // httplib writes a response as header, then body: with Nagle's algorithm the body waits
    // for the client's ACK of the header, which a client delays by ~40 ms (tcp(7)). Every call
    // paid that stall before this was set.
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SocketStream stream(sock, config_.read_timeout, config_.write_timeout);
    for (uint64_t served = 0; served < config_.keep_alive_max; ++served) {
      if (svr_sock_ == INVALID_SOCKET) return true;  // stopping: no new request here
      if (!WaitReadable(sock, config_.request_timeout)) return true;
      bool last = served + 1 == config_.keep_alive_max;
      bool closed = false;
      if (!process_request(stream, last, closed, nullptr)) return false;
      if (closed) return true;
      ConnectionWatchdog::AwaitRequest();
    }
    return true;
  }

  const HttpConfig config_;
  ConnectionWatchdog* const watchdog_;
};

ApiResponse JsonResponse(int status, const nlohmann::json& body) {
  return ApiResponse{status, "application/json",
                     body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

ApiResponse ErrorResponse(const Status& status) {
  nlohmann::json body = ErrorBody(status);
  ApiResponse response = JsonResponse(HttpStatusFor(status), body);
  // A limit that clears by itself says when to come back (details.retry_after_s).
  const nlohmann::json& details = body["error"]["details"];
  if (details.contains("retry_after_s") && details["retry_after_s"].is_number_unsigned()) {
    response.retry_after = std::to_string(details["retry_after_s"].get<uint64_t>());
  }
  return response;
}

ApiResponse EmptyResponse(int status) {
  return ApiResponse{status, "", ""};
}

RouteMatch MatchRoute(const std::vector<Route>& routes, const std::string& method,
                      const std::string& path) {
  RouteMatch match;
  std::set<std::string> allowed;
  for (const Route& route : routes) {
    std::map<std::string, std::string> params;
    if (!MatchPattern(route.pattern, path, &params)) continue;
    bool same_method = route.method == method || (method == "HEAD" && route.method == "GET");
    if (!same_method) {
      allowed.insert(route.method);
      continue;
    }
    match.route = &route;
    match.params = std::move(params);
    return match;
  }
  if (!allowed.empty()) {
    match.error =
        Status::InvalidArgument(fmt::format("{} is not allowed on this path (allowed: {})", method,
                                            fmt::join(allowed, ", ")))
            .WithReason("method_not_allowed");
  } else {
    match.error = Status::NotFound("no such route").WithReason("route_not_found");
  }
  return match;
}

HttpServer::HttpServer(const HttpConfig& config, uint64_t max_request_bytes,
                       std::vector<Route> routes)
    : routes_(std::move(routes)),
      watchdog_(std::make_unique<ConnectionWatchdog>(config.request_timeout)),
      server_(std::make_unique<GuardedServer>(config, watchdog_.get())) {
  size_t warm = config.threads;
  size_t max = config.max_connections;
  server_->new_task_queue = [warm, max] { return new ElasticTaskQueue(warm, max); };
  server_->set_payload_max_length(max_request_bytes);
  // Only the `Keep-Alive: timeout=, max=` header reads these (ServeConnection enforces both):
  // a client that believed httplib's defaults (5 s, 5 requests) would reconnect for nothing.
  server_->set_keep_alive_max_count(config.keep_alive_max);
  server_->set_keep_alive_timeout(std::max<time_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(config.request_timeout).count()));

  // In a handler the connection is exempt from `http.request_timeout`: a long call is work,
  // not a slow client.
  auto dispatch = [this](const httplib::Request& req, httplib::Response& res) {
    ConnectionWatchdog::HandlerScope in_handler;
    Dispatch(req.method, &req, &res);
  };
  server_->Get(kAnyPath, dispatch);
  server_->Post(kAnyPath, dispatch);
  server_->Put(kAnyPath, dispatch);
  server_->Patch(kAnyPath, dispatch);
  server_->Delete(kAnyPath, dispatch);
  server_->Options(kAnyPath, dispatch);

  httplib::Server::HandlerWithResponse on_error = [](const httplib::Request& req,
                                                     httplib::Response& res) {
    if (!res.body.empty() || res.status < 400) return httplib::Server::HandlerResponse::Unhandled;
    Status status = StatusForBareCode(res.status);
    // httplib refuses a POST without Content-Length (`curl -X POST URL` sends none) with a bare
    // 400; say what to send instead of "malformed".
    bool has_body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
    if (res.status == 400 && has_body_method && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      status = Status::InvalidArgument(
                   fmt::format("{} needs a Content-Length header, also for an empty body (send "
                               "`{{}}` with curl -d)",
                               req.method))
                   .WithReason("length_required");
    }
    WriteResponse(ErrorResponse(status), res);
    return httplib::Server::HandlerResponse::Handled;
  };
  server_->set_error_handler(std::move(on_error));
  server_->set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        kLog.Error(kNoSession, "{} {}: handler threw: {}", req.method, req.path, what);
        WriteResponse(ErrorResponse(Status::Internal("internal error")), res);
      });
}

HttpServer::~HttpServer() = default;

void HttpServer::Dispatch(const std::string& method, const void* request, void* response) {
  const auto& req = *static_cast<const httplib::Request*>(request);
  auto& res = *static_cast<httplib::Response*>(response);
  RouteMatch match = MatchRoute(routes_, method, req.path);
  if (match.route == nullptr) {
    WriteResponse(ErrorResponse(match.error), res);
    return;
  }
  ApiRequest api{method, req.path, std::move(match.params),
                 std::multimap<std::string, std::string>(req.params.begin(), req.params.end()),
                 req.body};
  ApiResponse reply = match.route->handler(api);
  if (reply.status >= 500) {
    kLog.Warn(kNoSession, "{} {} -> {}", method, req.path, reply.status);
  } else {
    kLog.Debug(kNoSession, "{} {} -> {}", method, req.path, reply.status);
  }
  WriteResponse(reply, res);
}

Result<int> HttpServer::Bind(const ListenAddress& address) {
  int port = address.port;
  if (port == 0) {
    port = server_->bind_to_any_port(address.host);
    if (port <= 0) return ErrnoStatus("bind `{}` on an ephemeral port", address.host);
  } else if (!server_->bind_to_port(address.host, port)) {
    return ErrnoStatus("bind `{}:{}`", address.host, port);
  }
  CORRAL_TRY(server_->WidenBacklog());
  return port;
}

Status HttpServer::Serve() {
  if (!server_->listen_after_bind()) {
    return Status::Internal("the HTTP server stopped with an error");
  }
  return Status::Ok();
}

// Connections waiting for (or receiving) a request are ended; those in a handler finish it.
void HttpServer::Stop() {
  server_->stop();
  watchdog_->ShutdownWaiting();
}

}  // namespace corral
