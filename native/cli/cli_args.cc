// See cli_args.h.
#include "cli_args.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

namespace openlora::cli {

Args parseArgs(int argc, char** argv) {
  if (argc < 2) throw UsageError("no subcommand");
  Args a;
  a.cmd = argv[1];
  for (int i = 2; i < argc; i++) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw UsageError("unexpected argument " + k);
    k = k.substr(2);
    const bool flag = i + 1 >= argc || std::strncmp(argv[i + 1], "--", 2) == 0;
    a.kv.emplace(k, flag ? "1" : argv[++i]);
  }
  return a;
}

std::vector<int> parseInts(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      out.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError(std::string(what) + ": \"" + item + "\" is not an integer");
    }
  }
  return out;
}

int threadsOf(const Args& a) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  return a.has("threads") ? std::max(1, std::stoi(a.get("threads"))) : hw;
}

double nowSec() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpuSec() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

void writeOut(const Args& a, const std::string& json) {
  if (!a.has("out")) return;
  std::ofstream f(a.get("out"));
  if (!f) throw std::runtime_error(a.get("out") + ": cannot write");
  f << json << "\n";
  std::printf("wrote %s\n", a.get("out").c_str());
}

}  // namespace openlora::cli
