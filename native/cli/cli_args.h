// openlora-cli's arguments and output helpers, shared by its subcommands (openlora_cli.cc,
// bench_commands.cc): `--key value` pairs, integer lists, the thread count, clocks and --out.
#pragma once

#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace openlora::cli {

/** A subcommand and its `--key value` options (a `--flag` without a value holds "1"). */
struct Args {
  std::string cmd;
  std::multimap<std::string, std::string> kv;
  bool has(const std::string& k) const { return kv.count(k) > 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  std::vector<std::string> all(const std::string& k) const {
    std::vector<std::string> out;
    for (auto [it, end] = kv.equal_range(k); it != end; ++it) out.push_back(it->second);
    return out;
  }
};

/** A bad command line: exit 2 with the usage text. */
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/** The asked backend is not available here: exit 3 (SKIP). */
struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/** argv -> Args. @throws UsageError without a subcommand or on a bare argument. */
Args parseArgs(int argc, char** argv);

/** "1,16,64" -> {1, 16, 64} (empty items skipped). @throws UsageError naming `what` on a non-integer. */
std::vector<int> parseInts(const std::string& s, const char* what);

/** --threads N (>= 1), else every hardware thread. */
int threadsOf(const Args& a);

/** Monotonic wall clock, seconds. */
double nowSec();

/** CPU time of the whole process (every thread), seconds: what a step cost, whatever it waited for a core. */
double cpuSec();

/** A tiny JSON writer for the --out files (objects of numbers, strings, arrays, objects). */
struct JsonOut {
  std::string s;
  static std::string str(const std::string& v) {
    std::string o = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') o += '\\';
      if (c == '\n') { o += "\\n"; continue; }
      o += c;
    }
    return o + "\"";
  }
  static std::string num(double v) {
    if (!std::isfinite(v)) return "null";
    char b[64];
    std::snprintf(b, sizeof b, "%.9g", v);
    return b;
  }
};

/** Write `json` to --out when given (and say so on stdout). @throws std::runtime_error when the file cannot be written. */
void writeOut(const Args& a, const std::string& json);

}  // namespace openlora::cli
