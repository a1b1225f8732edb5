// The FUSE passthrough file system of the replicator (tandem_fuse addon): its per-mount
// state, the operations it counts, and the libfuse operation table. No N-API here: these
// functions run on libfuse's worker threads, never on the JavaScript thread.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif

#include <fuse.h>

#include <atomic>
#include <cstdint>
#include <sys/types.h>

namespace tandem {
namespace fusefs {

// Every operation the passthrough serves, counted by kind. The names (kOpNames, same order)
// are the keys of stats().operations in JavaScript.
enum OpKind : int {
  kGetattr,
  kReadlink,
  kMknod,
  kMkdir,
  kUnlink,
  kRmdir,
  kSymlink,
  kRename,
  kLink,
  kChmod,
  kChown,
  kTruncate,
  kOpen,
  kCreate,
  kRead,
  kWrite,
  kStatfs,
  kRelease,
  kFsync,
  kOpendir,
  kReaddir,
  kReleasedir,
  kFsyncdir,
  kUtimens,
  kFallocate,
  kLseek,
  kOpCount,
};

extern const char* const kOpNames[kOpCount];

// Whether an operation changes the tree (what the replicator will intercept and ship): the
// namespace changes, writes, attribute changes and the syncs that make them durable. An
// open with O_TRUNC changes it too (it passes the seam; kOpen is not listed here).
bool OpModifies(OpKind kind);

// One counter on a cache line of its own, so that worker threads on different cores do not
// bounce a shared line on every operation.
struct alignas(64) Counter {
  std::atomic<uint64_t> value{0};
  void Add(uint64_t amount) { value.fetch_add(amount, std::memory_order_relaxed); }
  uint64_t Load() const { return value.load(std::memory_order_relaxed); }
};

// What the operations of one mount share; libfuse hands it back as private_data.
struct Volume {
  // The replicated directory itself, opened (O_PATH) BEFORE the FUSE mount hid it: every
  // operation reaches the real files through it, relative to it, never through the mount.
  int dirFd = -1;
  // Settings applied in init (0: libfuse's default).
  unsigned maxWriteSize = 0;
  unsigned maxReadSize = 0;
  // The daemon's own ids: a file created for a caller with other ids is handed to it.
  uid_t daemonUid = 0;
  gid_t daemonGid = 0;

  Counter operations[kOpCount];
  Counter errors;
  Counter bytesRead;
  Counter bytesWritten;
};

// The operation table of the passthrough (high-level API: handlers receive paths).
const fuse_operations& PassthroughOperations();

}  // namespace fusefs
}  // namespace tandem
