// Small file helpers shared by the components.
#pragma once

#include <string>

namespace hpctrain::files {

/// Replaces `path` with `text` atomically: readers see the old file or the whole new one, never a
/// part (a temporary file beside it, flushed with fsync, then renamed over it). Throws
/// hpctrain::Error naming the file on failure.
void write_atomic(const std::string& path, const std::string& text);

/// Creates `path` with `text` unless it exists: false when it does. The file appears whole or not
/// at all (a temporary file linked into place), also on shared file systems across nodes.
bool create_exclusive(const std::string& path, const std::string& text);

/// fsync of a file or directory (a directory: the names in it, after a rename). Throws
/// hpctrain::Error naming it and the system's error.
void fsync_path(const std::string& path);

/// The whole file, or throws hpctrain::Error naming it.
std::string read_all(const std::string& path);

}  // namespace hpctrain::files

namespace hpctrain::files {

/// A file that grows by whole pieces (a line of metrics, a record of events): each append() writes
/// all of its bytes or cuts what it wrote of them, so that a later run appends after whole pieces
/// only, and throws WriteError naming the file. Writes go to the kernel at once (no user-space
/// buffer); close() flushes them to disk (fsync) and reports what only that finds (a network file
/// system's full disk or quota).
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile();  ///< closes without fsync (an error path: the pieces written stay whole)

  /// Opens `path` to append, created if absent; `exclusive`: fails if it exists (false then; true
  /// when opened). `what` names the file in errors ("the metrics file").
  bool open(const std::string& path, const std::string& what, bool exclusive = false);
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  void append(const std::string& bytes);
  /// fsync, then close; throws WriteError naming the file.
  void close();

 private:
  [[noreturn]] void fail(const std::string& why) const;
  int fd_ = -1;
  std::string path_, what_;
};

}  // namespace hpctrain::files
