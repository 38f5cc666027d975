// HDF5 plumbing shared by data and ckpt: the process-wide HDF5 lock, the check macro that turns
// the HDF5 error stack into hpctrain::Error, and a move-only owner for hid_t handles.
#pragma once

#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

#include "hpctrain/core/dtype.h"
#include "hpctrain/core/error.h"

namespace hpctrain::h5 {

/// The Debian HDF5 is built without thread safety: every HDF5 call in the process (loader thread,
/// checkpoint writer, tools) must hold this lock. The library itself is process-global state, so
/// its lock is too. Recursive, so helpers that lock may call each other.
std::recursive_mutex& mutex();

/// Holds the HDF5 lock for a scope.
class Lock {
 public:
  Lock() : guard_(mutex()) {}

 private:
  std::lock_guard<std::recursive_mutex> guard_;
};

/// Turns off HDF5's automatic printing of its error stack (we read it into our errors instead).
/// Idempotent; called by every Handle and by HPCT_H5_CHECK.
void quiet_errors();

/// The current HDF5 error stack as one readable string ("" when empty), then clears it.
std::string take_error_stack();

/// "" when every link of `path` ("/a/b/c") exists under `loc`, else the first prefix that does not
/// ("/a/b"). Walks the path because H5Lexists fails, rather than answers, for a missing parent.
/// Caller holds the lock.
std::string missing_prefix(hid_t loc, const std::string& path);

/// The HDF5 type a DType is stored as in files hpctrain writes (little-endian, standard sizes).
hid_t file_type(DType t);

/// What closes an hid_t of each kind.
using CloseFn = herr_t (*)(hid_t);

/// Move-only owner of an HDF5 identifier; closes it (under the lock) when destroyed.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, CloseFn close) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  ~Handle() { reset(); }

  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  void reset() noexcept;

 private:
  hid_t id_ = H5I_INVALID_HID;
  CloseFn close_ = nullptr;
};

namespace detail {
[[noreturn]] void throw_h5_error(const char* call, const std::string& context, const char* file,
                                 int line);
}  // namespace detail

}  // namespace hpctrain::h5

/// HPCT_H5_CHECK(H5Fopen(...), "opening " << path): evaluates the call (which must already hold
/// h5::Lock), throws hpctrain::Error with the context, the call, the HDF5 error stack and
/// file:line when it returns a negative value; otherwise yields the call's result.
#define HPCT_H5_CHECK(call, context)                                                       \
  ([&]() {                                                                                 \
    ::hpctrain::h5::quiet_errors();                                                        \
    auto hpct_h5_rc_ = (call);                                                             \
    if (hpct_h5_rc_ < 0) {                                                                 \
      std::ostringstream hpct_h5_os_;                                                      \
      hpct_h5_os_ << context;                                                              \
      ::hpctrain::h5::detail::throw_h5_error(#call, hpct_h5_os_.str(), __FILE__, __LINE__); \
    }                                                                                      \
    return hpct_h5_rc_;                                                                    \
  }())
