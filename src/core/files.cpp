// write_atomic: temporary file, fsync, rename.
#include "hpctrain/core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"

namespace hpctrain::files {

namespace {

// A temporary name beside `path` that no other process, on this host or another, uses.
std::string temp_name(const std::string& path) {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device rd;
  return path + ".tmp." + host + "." + std::to_string(::getpid()) + "." + std::to_string(rd());
}

// Writes text to a new file `tmp` (on its way to `path`, named in errors) and flushes it to disk.
void write_new(const std::string& tmp, const std::string& text, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw WriteError("cannot write " + path + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw WriteError("cannot write " + path + ": " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  // Errors of a network file system (quota, no space) may surface only here.
  if (::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    throw WriteError("cannot write " + path + ": " + why);
  }
  if (::close(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw WriteError("cannot write " + path + ": " + why);
  }
}

// The rename itself made durable: the directory that holds `path` flushed to disk. File systems
// that cannot flush a directory (EINVAL) are taken at their word.
void sync_parent(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw WriteError("cannot open " + dir + " to flush the rename of " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != ENOTSUP)
    throw WriteError("cannot flush " + dir + " (the rename of " + path + ") to disk: " + std::strerror(err));
}

}  // namespace

void write_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = temp_name(path);
  write_new(tmp, text, path);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw WriteError("cannot write " + path + " (renaming " + tmp + " over it): " + why);
  }
  sync_parent(path);
}

bool create_exclusive(const std::string& path, const std::string& text) {
  const std::string tmp = temp_name(path);
  write_new(tmp, text, path);
  const int rc = ::link(tmp.c_str(), path.c_str());  // fails with EEXIST when path exists, atomically
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc == 0) return true;
  if (err == EEXIST) return false;
  if (err == EPERM || err == EOPNOTSUPP || err == ENOSYS) {
    // A file system without hard links: exclusive creation, then the text.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) return false;
    if (fd < 0) throw WriteError("cannot create " + path + ": " + std::strerror(errno));
    int err = 0;
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0) err = errno ? errno : EIO;
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) {
      ::unlink(path.c_str());  // complete or absent
      throw WriteError("cannot write " + path + ": " + std::strerror(err));
    }
    return true;
  }
  throw WriteError("cannot create " + path + ": " + std::strerror(err));
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw WriteError("cannot open " + path + " to flush it to disk: " + std::strerror(errno));
  if (::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw WriteError("cannot flush " + path + " to disk: " + why);
  }
  if (::close(fd) != 0) throw WriteError("cannot close " + path + ": " + std::strerror(errno));
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::fail(const std::string& why) const {
  throw WriteError("cannot write " + what_ + " '" + path_ + "': " + why);
}

bool AppendFile::open(const std::string& path, const std::string& what, bool exclusive) {
  if (fd_ >= 0) close();
  path_ = path;
  what_ = what;
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0), 0644);
  if (fd_ < 0 && exclusive && errno == EEXIST) return false;
  if (fd_ < 0) fail(std::strerror(errno));
  return true;
}

void AppendFile::append(const std::string& bytes) {
  if (fd_ < 0) fail("it is not open");
  struct stat st {};
  const off_t before = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(n < 0 ? errno : EIO);
      // No torn piece: a resumed run appends after what is here.
      if (before >= 0 && done > 0 && ::ftruncate(fd_, before) != 0) {
        HPCT_LOG(warning) << "cannot cut the torn end of " << path_ << ": " << std::strerror(errno);
      }
      fail(why);
    }
    done += static_cast<std::size_t>(n);
  }
}

void AppendFile::close() {
  const int fd = fd_;
  fd_ = -1;
  if (fd < 0) return;
  if (::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    fail(why);
  }
  if (::close(fd) != 0) fail(std::strerror(errno));
}

}  // namespace hpctrain::files
