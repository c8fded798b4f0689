// corral-bench-load: the benchmark's load generator, in C++ so that the client's own cost stays
// far below the microseconds being measured (a Python client would add its interpreter to every
// call and, with the GIL, cap throughput at what one core of Python can send).
//
//   corral-bench-load http --port P --paths FILE --body JSON --clients N
//                          (--requests M | --seconds S) [--warmup W]
//   corral-bench-load floor --python PY --worker WORKER_PY --requests M [--warmup W]
//
// `http`: N threads, each with its own keep-alive connection, POST the body to the paths of the
// file (client i takes lines i, i + N, ... in turn). `floor`: the same execute_program request
// sent as a protocol frame straight to a worker over a socketpair, no HTTP and no daemon: the
// least a call can cost. Both print one JSON object: count, errors, elapsed_s, calls_per_s and
// latency percentiles in microseconds; `floor` adds the CPU a call cost the client and the
// worker. Any failed call is counted, never hidden.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <latch>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kProgramSource[] = "def forward(x):\n    return x\n";

struct Options {
  std::string mode;
  int port = 0;
  std::string paths_file;
  std::string body = R"({"inputs": {"x": 1}})";
  int clients = 1;
  long requests = 0;
  double seconds = 0;
  long warmup = 0;
  std::string python = "/usr/bin/python3";
  std::string worker;
};

struct ClientResult {
  std::vector<double> latencies_us;
  long errors = 0;
  std::string first_error;
};

double MicrosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// Nearest-rank percentile, the same definition the Python driver uses.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::max(1.0, std::ceil(p / 100.0 * sorted.size())));
  return sorted[std::min(rank, sorted.size()) - 1];
}

nlohmann::json Summary(std::vector<ClientResult>& results, double elapsed_s) {
  std::vector<double> all;
  long errors = 0;
  std::string first_error;
  for (auto& result : results) {
    all.insert(all.end(), result.latencies_us.begin(), result.latencies_us.end());
    errors += result.errors;
    if (first_error.empty()) first_error = result.first_error;
  }
  std::sort(all.begin(), all.end());
  return {{"count", all.size()},
          {"errors", errors},
          {"first_error", first_error},
          {"elapsed_s", elapsed_s},
          {"calls_per_s", elapsed_s > 0 ? all.size() / elapsed_s : 0.0},
          {"p50_us", Percentile(all, 50)},
          {"p99_us", Percentile(all, 99)},
          {"max_us", all.empty() ? 0.0 : all.back()}};
}

// --- http mode -------------------------------------------------------------------------------

bool PostOnce(httplib::Client* client, const std::string& path, const Options& options,
              ClientResult* result) {
  auto response = client->Post(path.c_str(), options.body, "application/json");
  if (response && response->status == 200) return true;
  result->errors++;
  if (result->first_error.empty()) {
    result->first_error = response ? std::to_string(response->status) + " " + response->body
                                   : httplib::to_string(response.error());
  }
  return false;
}

// A client takes its share of the paths (i, i + N, ...) and goes round them, so that one client
// can visit many sessions; with more clients than paths, client i takes path i modulo the count.
std::vector<std::string> ShareOf(const std::vector<std::string>& paths, int client, int clients) {
  std::vector<std::string> share;
  for (size_t j = client; j < paths.size(); j += clients) share.push_back(paths[j]);
  if (share.empty()) share.push_back(paths[client % paths.size()]);
  return share;
}

// Every client warms up first; the timed phase (and the deadline) starts once all have, so a
// slow warm-up never eats into the measured seconds.
struct Phase {
  explicit Phase(int clients) : warmed(clients) {}
  std::latch warmed;
  std::atomic<bool> go{false};
  Clock::time_point start;  // written before `go` is set, read after it is seen
  Clock::time_point deadline;
};

void RunHttpClient(const Options& options, std::vector<std::string> paths, Phase* phase,
                   ClientResult* result) {
  httplib::Client client("127.0.0.1", options.port);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // headers and body go out as two writes: no Nagle wait
  client.set_read_timeout(120, 0);
  client.set_write_timeout(120, 0);
  for (long i = 0; i < options.warmup; ++i) {
    PostOnce(&client, paths[i % paths.size()], options, result);
  }
  result->errors = 0;
  result->first_error.clear();
  phase->warmed.count_down();
  phase->go.wait(false);

  for (long i = 0; options.requests == 0 || i < options.requests; ++i) {
    if (options.requests == 0 && Clock::now() >= phase->deadline) break;
    Clock::time_point start = Clock::now();
    if (PostOnce(&client, paths[i % paths.size()], options, result)) {
      result->latencies_us.push_back(MicrosSince(start));
    }
  }
}

int RunHttp(const Options& options) {
  std::vector<std::string> paths;
  std::ifstream file(options.paths_file);
  for (std::string line; std::getline(file, line);) {
    if (!line.empty()) paths.push_back(line);
  }
  if (paths.empty()) {
    std::fprintf(stderr, "corral-bench-load: no paths in `%s`\n", options.paths_file.c_str());
    return 2;
  }
  std::vector<ClientResult> results(options.clients);
  std::vector<std::thread> threads;
  Phase phase(options.clients);
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back(RunHttpClient, std::cref(options), ShareOf(paths, i, options.clients),
                         &phase, &results[i]);
  }
  phase.warmed.wait();
  phase.start = Clock::now();
  phase.deadline = phase.start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.seconds));
  phase.go.store(true);
  phase.go.notify_all();
  for (auto& thread : threads) thread.join();
  double elapsed = MicrosSince(phase.start) / 1e6;
  std::printf("%s\n", Summary(results, elapsed).dump().c_str());
  return 0;
}

// --- floor mode ------------------------------------------------------------------------------

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool ReadExact(int fd, char* buffer, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, buffer + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// One request frame out, one reply frame back, decoded: what the daemon's channel does.
bool FrameCall(int fd, long id, const std::string& command, const nlohmann::json& args,
               nlohmann::json* reply) {
  std::string body = nlohmann::json{{"id", id}, {"command", command}, {"args", args}}.dump();
  uint32_t length = htonl(static_cast<uint32_t>(body.size()));
  std::string frame(reinterpret_cast<const char*>(&length), 4);
  if (!WriteAll(fd, frame + body)) return false;
  char header[4];
  if (!ReadExact(fd, header, 4)) return false;
  uint32_t size;
  std::memcpy(&size, header, 4);
  std::string text(ntohl(size), '\0');
  if (!ReadExact(fd, text.data(), text.size())) return false;
  *reply = nlohmann::json::parse(text, nullptr, false);
  return reply->is_object() && reply->contains("result");
}

// CPU time a task has run so far, in microseconds: /proc/PID/schedstat's first field, in
// nanoseconds (the worker is one thread; /proc/PID/stat would give only 10 ms ticks).
double TaskCpuMicros(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/schedstat");
  double nanoseconds = 0;
  file >> nanoseconds;
  return nanoseconds / 1000.0;
}

double SelfCpuMicros() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto micros = [](const timeval& t) { return t.tv_sec * 1e6 + t.tv_usec; };
  return micros(usage.ru_utime) + micros(usage.ru_stime);
}

pid_t SpawnWorker(const Options& options, int child_end) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  dup2(child_end, 3);
  int null = open("/dev/null", O_WRONLY);  // the worker's log lines are not the benchmark's
  dup2(null, 2);
  setenv("CORRAL_CHANNEL_FD", "3", 1);
  execl(options.python.c_str(), options.python.c_str(), "-I", options.worker.c_str(), nullptr);
  _exit(127);
}

int RunFloor(const Options& options) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 1;
  pid_t pid = SpawnWorker(options, fds[1]);
  close(fds[1]);

  nlohmann::json reply;
  nlohmann::json program = {
      {"program_id", "bench"}, {"kind", "python"}, {"source", kProgramSource}};
  nlohmann::json execute = {{"program_id", "bench"},
                            {"inputs", nlohmann::json::parse(options.body)["inputs"]}};
  std::vector<ClientResult> results(1);
  long id = 1;
  if (!FrameCall(fds[0], id++, "create_program", program, &reply)) {
    results[0].errors++;
    results[0].first_error = "create_program: " + reply.dump();
  }
  for (long i = 0; i < options.warmup; ++i) {
    FrameCall(fds[0], id++, "execute_program", execute, &reply);
  }

  Clock::time_point begin = Clock::now();
  double client_cpu = SelfCpuMicros();
  double worker_cpu = TaskCpuMicros(pid);
  for (long i = 0; i < options.requests; ++i) {
    Clock::time_point start = Clock::now();
    if (FrameCall(fds[0], id++, "execute_program", execute, &reply)) {
      results[0].latencies_us.push_back(MicrosSince(start));
    } else {
      results[0].errors++;
    }
  }
  double elapsed = MicrosSince(begin) / 1e6;
  client_cpu = SelfCpuMicros() - client_cpu;
  worker_cpu = TaskCpuMicros(pid) - worker_cpu;
  close(fds[0]);  // end of file: the worker exits
  waitpid(pid, nullptr, 0);
  nlohmann::json summary = Summary(results, elapsed);
  double calls = std::max<double>(1, options.requests);
  summary["cpu_per_call_us"] = {{"client", client_cpu / calls}, {"worker", worker_cpu / calls}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

// --- command line ----------------------------------------------------------------------------

using Setter = void (*)(Options*, const std::string&);

// The command line is a table: each flag names the one field it sets.
const std::map<std::string, Setter> kFlags = {
    {"--port", [](Options* o, const std::string& v) { o->port = std::stoi(v); }},
    {"--paths", [](Options* o, const std::string& v) { o->paths_file = v; }},
    {"--body", [](Options* o, const std::string& v) { o->body = v; }},
    {"--clients", [](Options* o, const std::string& v) { o->clients = std::stoi(v); }},
    {"--requests", [](Options* o, const std::string& v) { o->requests = std::stol(v); }},
    {"--seconds", [](Options* o, const std::string& v) { o->seconds = std::stod(v); }},
    {"--warmup", [](Options* o, const std::string& v) { o->warmup = std::stol(v); }},
    {"--python", [](Options* o, const std::string& v) { o->python = v; }},
    {"--worker", [](Options* o, const std::string& v) { o->worker = v; }},
};

bool ParseOptions(int argc, char** argv, Options* options) {
  if (argc < 2 || argc % 2 != 0) return false;
  options->mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    auto flag = kFlags.find(argv[i]);
    if (flag == kFlags.end()) return false;
    try {
      flag->second(options, argv[i + 1]);
    } catch (const std::exception&) {  // std::stoi and friends: not a number
      return false;
    }
  }
  bool bounded = options->requests > 0 || options->seconds > 0;
  if (options->mode == "http") {
    return options->port > 0 && options->clients > 0 && !options->paths_file.empty() && bounded;
  }
  if (options->mode == "floor") return !options->worker.empty() && options->requests > 0;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Options options;
  if (!ParseOptions(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: corral-bench-load http --port P --paths FILE [--body JSON] --clients N "
                 "(--requests M | --seconds S) [--warmup W]\n"
                 "       corral-bench-load floor --python PY --worker WORKER_PY --requests M "
                 "[--warmup W] [--body JSON]\n");
    return 2;
  }
  return options.mode == "http" ? RunHttp(options) : RunFloor(options);
}
