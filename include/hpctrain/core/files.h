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
