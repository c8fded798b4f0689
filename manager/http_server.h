// The HTTP adapter: cpp-httplib underneath, a route table on top. Handlers see a small
// request value and return a small response value; they never touch httplib, so the library's
// exceptions and quirks stay in http_server.cc.
//
// Defences here: request bodies past `limits.max_request_bytes` are refused with 413 before
// they are read (Content-Length checked by httplib); a connection that does not deliver its
// request within `http.request_timeout` is ended, and each connection runs on its own thread
// up to `http.max_connections`, so slow clients neither keep threads nor starve the served
// ones (S53, see http_connections.h); a handler's exception is a 500 with the one error shape,
// never a crash.
//
// Thread safety: routes are added before Serve(); Stop() may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manager/config.h"
#include "sandbox/status.h"

namespace corral {

class ConnectionWatchdog;
class GuardedServer;

struct ApiRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> params;  // path parameters by name: {id} -> "s-42"
  std::multimap<std::string, std::string> query;
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string retry_after;  // Retry-After seconds, for 429 and 503; empty: none
};

ApiResponse JsonResponse(int status, const nlohmann::json& body);
ApiResponse ErrorResponse(const Status& status);
ApiResponse EmptyResponse(int status);

using ApiHandler = std::function<ApiResponse(const ApiRequest&)>;

struct Route {
  std::string method;
  std::string pattern;  // "/v1/sessions/{id}/programs/{program_id}"
  ApiHandler handler;
};

// Finds the route for `method` and `path`: the response when none (404 or 405), else the
// route with `params` filled.
struct RouteMatch {
  const Route* route = nullptr;
  std::map<std::string, std::string> params;
  Status error;
};
RouteMatch MatchRoute(const std::vector<Route>& routes, const std::string& method,
                      const std::string& path);

class HttpServer {
 public:
  HttpServer(const HttpConfig& config, uint64_t max_request_bytes, std::vector<Route> routes);
  ~HttpServer();

  // Binds the listen address; returns the bound port (the ephemeral one for port 0).
  Result<int> Bind(const ListenAddress& address);
  // Serves until Stop(); returns once every in-flight request has been answered.
  Status Serve();
  // Stops accepting and ends connections that wait for a request; requests already in a
  // handler still get their answer. Safe from any thread.
  void Stop();

 private:
  void Dispatch(const std::string& method, const void* request, void* response);

  const std::vector<Route> routes_;
  std::unique_ptr<ConnectionWatchdog> watchdog_;  // outlives server_'s connection threads
  std::unique_ptr<GuardedServer> server_;
};

}  // namespace corral
