// The FUSE passthrough file system of the replicator (tandem_fuse addon): its per-mount
// state, the operations it counts, and the libfuse operation table. No N-API here: these
// functions run on libfuse's worker threads, never on the JavaScript thread.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif

#include <fuse.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>
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
  kSetxattr,
  kGetxattr,
  kListxattr,
  kRemovexattr,
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

// What a mount does with the operations that change the tree.
enum class Mode {
  // Applies them to the files underneath (the step-1 passthrough; tests and benchmarks).
  kPassthrough,
  // Refuses them with EROFS, as a read-only file system does (a secondary, a stopped
  // module); nothing is cached, since the files underneath change without this mount.
  kReadOnly,
  // Hands each one to the core (Interceptor) and answers what it answers.
  kIntercept,
};

// One operation handed to the core, in the shape of its DiskOp (core/mirror/disk-ops.ts).
// It lives on the stack of the worker that filled it, which waits until it is answered.
struct Intercepted {
  const char* kind = nullptr;  // a DiskOp kind: "create", "write", "rename", ...
  std::string path;            // relative to the root, no leading '/'; "" is the root
  std::string other;           // rename, link: the new name; symlink: what the link points to;
                               // setxattr, removexattr: the attribute's name
  int64_t offset = 0;          // write
  int64_t size = 0;            // truncate; setxattr: its flags (XATTR_CREATE, XATTR_REPLACE)
  uint32_t mode = 0;           // create, mkdir, setattr (permission bits only)
  int64_t uid = -1;            // chown (-1: unchanged); the owner of create, mkdir, symlink
  int64_t gid = -1;
  bool hasOwner = false;
  const char* data = nullptr;  // write: the application's bytes; setxattr: the value
  size_t length = 0;
  // times: each time set (UTIME_NOW resolved to this node's clock), absent for UTIME_OMIT
  bool hasAtime = false;
  bool hasMtime = false;
  struct timespec atime = {};
  struct timespec mtime = {};
};

// Hands an operation to the core and waits for its answer: 0, or -errno.
class Interceptor {
 public:
  virtual ~Interceptor() = default;
  virtual int Submit(const Intercepted& op) = 0;
  // For the lane: registers `op` as waiting for the core without handing it over (a lane
  // report carries it); its id, or 0 when closed. WaitFor(id) then waits for its answer.
  virtual uint64_t Enlist(const Intercepted& op) = 0;
  virtual int WaitFor(uint64_t id) = 0;
  // Runs `run` on the JavaScript thread after everything handed over before it. false: cannot.
  virtual bool Post(std::function<void()> run) = 0;
};

class Lane;

// What the operations of one mount share; libfuse hands it back as private_data.
struct Volume {
  Mode mode = Mode::kPassthrough;
  // Set in kIntercept mode; outlives the session loop.
  Interceptor* interceptor = nullptr;
  // Set in kIntercept mode when the module runs a lane (fuse-lane.h): writes and fsyncs are
  // offered to it first, and every operation for the core passes its barrier.
  Lane* lane = nullptr;
  // The replicated directory itself, opened (O_PATH) BEFORE the FUSE mount hid it: every
  // operation reaches the real files through it, relative to it, never through the mount.
  int dirFd = -1;
  // Settings applied in init (0: libfuse's default).
  unsigned maxWriteSize = 0;
  unsigned maxReadSize = 0;
  // Granted FUSE_HANDLE_KILLPRIV_V2 at INIT (fuse-kernel-io.h): the set-ID bits are this
  // file system's to clear when the kernel asks.
  std::atomic<bool> killprivV2{false};
  // Granted FUSE_CAP_POSIX_ACL (with FUSE_CAP_DONT_MASK) at INIT, because the file system
  // underneath keeps POSIX ACLs: the kernel enforces them, and the caller's umask is this
  // file system's to apply (CreationMode()).
  std::atomic<bool> posixAcl{false};
  // What KillSuidgid() last found of an open file, by descriptor (below kSetIdCacheSize):
  // 0 unknown, else (setIdEpoch << 1) | has-set-ID-bits. The kernel asks at every write of
  // a caller without CAP_FSETID (PostgreSQL's), and an fstat each time cost its pgbench a
  // few percent here. A chmod through the mount starts a new epoch; a release forgets.
  static constexpr int kSetIdCacheSize = 1 << 14;
  std::unique_ptr<std::atomic<uint64_t>[]> setIdCache{new std::atomic<uint64_t>[kSetIdCacheSize]()};
  std::atomic<uint64_t> setIdEpoch{1};
  // The daemon's own ids: a file created for a caller with other ids is handed to it.
  uid_t daemonUid = 0;
  gid_t daemonGid = 0;
  // Paths left out of replication (intercept mode): an operation whose paths all lie there
  // is applied here as by a passthrough, never handed to the core, which would only have
  // applied it here too (docs/mirror.md, "Not replicated"). Whether a path is excluded
  // depends on nothing but its name, so what is known never goes stale: `excludedPrefixes`
  // (the `<notreplicated path>` rules, with everything below them) is set before the
  // mount; `excludedPaths` are the paths JavaScript found excluded by the rules only it
  // tests (regular expressions), learned as their first operations go through the core.
  std::vector<std::string> excludedPrefixes;
  static constexpr size_t kExcludedPathsMax = 1 << 16;
  std::shared_mutex excludedMutex;
  std::unordered_set<std::string> excludedPaths;
  std::atomic<bool> anyExcludedPath{false};

  Counter operations[kOpCount];
  Counter intercepted;
  Counter laneOps;
  Counter excludedOps;
  Counter errors;
  Counter bytesRead;
  Counter bytesWritten;
};

// Adds `path` (relative, no leading '/') to the volume's learned excluded paths. When the
// set is full it starts again (the names of short-lived files would otherwise fill it).
void LearnExcluded(Volume& volume, const std::string& path);

// The operation table of the passthrough (high-level API: handlers receive paths).
const fuse_operations& PassthroughOperations();

}  // namespace fusefs
}  // namespace tandem
