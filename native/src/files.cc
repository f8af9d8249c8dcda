// See files.h.
#include "files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace openlora {

std::string readFile(const std::string& path, const std::string& hint) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    raise(err == ENOENT ? ErrorCode::NotFound : ErrorCode::BadFile,
          path + ": cannot open: " + std::strerror(err ? err : EIO) + (hint.empty() ? "" : " (" + hint + ")"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) raise(ErrorCode::BadFile, path + ": read failed");
  return ss.str();
}

}  // namespace openlora
