// The passthrough file system: every operation is applied to the real file underneath,
// reached through the volume's directory handle (Volume::dirFd, opened before the mount
// hid the directory). libfuse's high-level API hands each handler the path inside the
// mount ("/a/b"); the handler uses it relative to the directory handle ("a/b"). These
// handlers run on libfuse's worker threads, in parallel; they share nothing but the
// volume's counters (atomics) and the kernel objects they name.
//
// Why the high-level API: the replication stream addresses files by path (DiskOp in
// core/mirror/disk-ops.ts), and the high-level layer keeps the kernel's inode numbers
// mapped to paths and locks the paths an operation names while it runs, so a rename
// cannot slip between the path the replicator ships and the file it applies to. The
// low-level API would have us rebuild that table. What it costs is in docs/replicator.md.
//
// Errors are the underlying file system's own (-errno), so applications see exactly what
// a local disk gives them.

#include "fuse-passthrough.h"
#include "fuse-lane.h"
#include "fuse-kernel-io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tandem {
namespace fusefs {

const char* const kOpNames[kOpCount] = {
    "getattr", "readlink", "mknod",   "mkdir",   "unlink",     "rmdir",    "symlink", "rename",  "link",
    "chmod",   "chown",    "truncate", "open",   "create",     "read",     "write",   "statfs",  "release",
    "fsync",   "opendir",  "readdir",  "releasedir", "fsyncdir", "utimens", "fallocate", "lseek",
    "setxattr", "getxattr", "listxattr", "removexattr",
};

bool OpModifies(OpKind kind) {
  switch (kind) {
    case kMknod:
    case kMkdir:
    case kUnlink:
    case kRmdir:
    case kSymlink:
    case kRename:
    case kLink:
    case kChmod:
    case kChown:
    case kTruncate:
    case kCreate:
    case kWrite:
    case kFsync:
    case kFsyncdir:
    case kUtimens:
    case kFallocate:
    case kSetxattr:
    case kRemovexattr:
      return true;
    default:
      return false;
  }
}

namespace {

Volume& CurrentVolume() { return *static_cast<Volume*>(fuse_get_context()->private_data); }

// "/a/b" (a path inside the mount, as libfuse gives it) to "a/b", relative to the directory
// handle; the root itself is ".".
const char* Relative(const char* path) {
  if (path == nullptr || path[0] != '/') return path;
  return path[1] == '\0' ? "." : path + 1;
}

// Counts one operation and its failure; returns `result` (0, a size, or -errno).
template <typename Result>
Result Finish(Volume& volume, OpKind kind, Result result) {
  volume.operations[kind].Add(1);
  if (result < 0) volume.errors.Add(1);
  return result;
}

int ResultOf(int rc) { return rc < 0 ? -errno : 0; }

// THE SEAM OF THE REPLICATOR. Every operation that changes the tree passes Modify(): a
// read-only mount refuses it (EROFS), otherwise `apply` runs, which in intercept mode
// builds the operation's DiskOp and Ship()s it to the core instead of applying it here
// (the core applies it underneath, in the order it chose, and ships it to the peer).
template <typename Apply>
int Modify(Volume& volume, OpKind kind, Apply apply) {
  if (volume.mode == Mode::kReadOnly) return Finish(volume, kind, -EROFS);
  return Finish(volume, kind, apply());
}

bool Intercepting(const Volume& volume) { return volume.mode == Mode::kIntercept; }

// Whether `path` (as libfuse gives it: "/a/b") is left out of replication: below an
// excluded prefix, or (`learned`) one of the paths JavaScript found excluded. Changes of
// names (create, unlink, rename, link, mkdir, rmdir, symlink) take only the prefixes:
// under a rule only JavaScript tests, the core's disk port keeps files open by name and
// indexes hard links, and must see every change of the names it may know. Below a prefix
// it never knows one (no change of those paths reaches it).
bool Excluded(Volume& volume, const char* path, bool learned) {
  if (path == nullptr || path[0] != '/' || path[1] == '\0') return false;
  const char* relative = path + 1;
  size_t length = std::strlen(relative);
  for (const std::string& prefix : volume.excludedPrefixes) {
    if (length >= prefix.size() && std::memcmp(relative, prefix.data(), prefix.size()) == 0 && (length == prefix.size() || relative[prefix.size()] == '/')) return true;
  }
  if (!learned || !volume.anyExcludedPath.load(std::memory_order_acquire)) return false;
  std::shared_lock<std::shared_mutex> hold(volume.excludedMutex);
  return volume.excludedPaths.count(std::string(relative, length)) != 0;
}

// Whether a change of `path` goes to the core: intercepting, and the path replicated (a
// change of an excluded path is applied here, counted). Without a path (a file unlinked
// while open) it is applied here: nobody's business but its holders'. `names`: the change
// makes or removes a name (Excluded()).
bool Replicating(Volume& volume, const char* path, bool names = false) {
  if (!Intercepting(volume) || path == nullptr) return false;
  if (!Excluded(volume, path, !names)) return true;
  volume.excludedOps.Add(1);
  return false;
}

// The same for a change naming two paths (rename, link): applied here only when both are
// excluded; between a replicated and an excluded path, the core decides.
bool Replicating(Volume& volume, const char* from, const char* to) {
  if (!Intercepting(volume)) return false;
  if (!Excluded(volume, from, false) || !Excluded(volume, to, false)) return true;
  volume.excludedOps.Add(1);
  return false;
}

// A path as libfuse gives it ("/a/b", "/") in DiskOp form ("a/b", "").
std::string DiskPath(const char* path) { return path[0] == '/' ? std::string(path + 1) : std::string(path); }

// An operation of `kind` on `path`, for the core.
Intercepted OpOn(const char* kind, const char* path) {
  Intercepted op;
  op.kind = kind;
  op.path = DiskPath(path);
  return op;
}

// Hands `op` to the core and waits for its answer (0 or -errno).
int Ship(Volume& volume, const Intercepted& op) {
  volume.intercepted.Add(1);
  if (volume.lane == nullptr) return volume.interceptor->Submit(op);
  volume.lane->BeginCore();
  int rc = volume.interceptor->Submit(op);
  volume.lane->EndCore();
  return rc;
}

// A write or fsync taken by the lane (its result in *rc), or false: it goes to the core.
bool OfferToLane(Volume& volume, const Intercepted& op, fuse_file_info* file, bool datasync, int* rc) {
  if (volume.lane == nullptr || file == nullptr) return false;
  bool taken = false;
  *rc = volume.lane->Offer(op, static_cast<int>(file->fh), datasync, &taken);
  if (taken) volume.laneOps.Add(1);
  return taken;
}

// Extended attributes are reached by path through /proc (the directory handle is O_PATH,
// and no *xattrat call is in this libc): `/proc/self/fd/N/a/b` for "a/b" relative to the
// handle, the root as `N/.`. The l- calls never follow a symlink the path ends in (its own
// attributes, as the kernel asks).
std::string HandlePath(const Volume& volume, const std::string& relative) {
  return "/proc/self/fd/" + std::to_string(volume.dirFd) + "/" + relative;
}

// The same for a path as libfuse gives it ("/a/b").
std::string XattrPath(const Volume& volume, const char* path) { return HandlePath(volume, Relative(path)); }

// The directory holding `relative`, relative to the directory handle ("." for the root's entries).
std::string ParentOf(const char* relative) {
  const char* slash = std::strrchr(relative, '/');
  return slash == nullptr ? std::string(".") : std::string(relative, static_cast<size_t>(slash - relative));
}

// The group of the directory holding `relative` when it is set-group-ID (its new entries
// then take that group), or -1.
gid_t SetgidParentGroup(const Volume& volume, const char* relative) {
  struct stat status {};
  if (fstatat(volume.dirFd, ParentOf(relative).c_str(), &status, 0) < 0 || (status.st_mode & S_ISGID) == 0) return static_cast<gid_t>(-1);
  return status.st_gid;
}

// The mode a new path named `relative` is made with underneath. With POSIX ACLs on, the
// kernel leaves the caller's umask to this file system (FUSE_CAP_DONT_MASK), and it
// applies as on a local one: only when the parent has no default ACL. With one, the mode
// goes down whole and the file system underneath masks the inherited ACL with it (this
// process's umask is 0 on the FUSE threads; the core's create keeps the inherited ACL).
mode_t CreationMode(const Volume& volume, const char* relative, mode_t mode) {
  if (!volume.posixAcl.load(std::memory_order_relaxed)) return mode;
  if (lgetxattr(HandlePath(volume, ParentOf(relative)).c_str(), "system.posix_acl_default", nullptr, 0) > 0) return mode;
  return mode & ~fuse_get_context()->umask;
}

// A new file, directory, node or symlink belongs to the process that created it, as on a
// local disk: the daemon created it with its own ids, so hand it over. Permission to
// create was already checked by the kernel (default_permissions) with the caller's full
// credentials, supplementary groups included. `fd` is the new file's descriptor or -1.
int Adopt(const Volume& volume, int fd, const char* relative, mode_t mode) {
  const fuse_context* context = fuse_get_context();
  if (context->uid == volume.daemonUid && context->gid == volume.daemonGid) return 0;
  // Under a set-group-ID directory the underlying create already gave the directory's group.
  gid_t gid = SetgidParentGroup(volume, relative) != static_cast<gid_t>(-1) ? static_cast<gid_t>(-1) : context->gid;
  int rc = fd >= 0 ? fchown(fd, context->uid, gid) : fchownat(volume.dirFd, relative, context->uid, gid, AT_SYMLINK_NOFOLLOW);
  if (rc < 0) return -errno;
  // chown clears a file's set-user-ID and set-group-ID bits: give back the ones asked for.
  if (S_ISREG(mode) && (mode & (S_ISUID | S_ISGID)) != 0) {
    rc = fd >= 0 ? fchmod(fd, mode & 07777) : fchmodat(volume.dirFd, relative, mode & 07777, 0);
    if (rc < 0) return -errno;
  }
  return 0;
}

// The owner a new path gets, as on a local disk: the caller's uid, and its gid unless the
// parent directory is set-group-ID (then the directory's group).
void SetOwner(const Volume& volume, const char* relative, Intercepted* op) {
  const fuse_context* context = fuse_get_context();
  op->hasOwner = true;
  op->uid = context->uid;
  gid_t parentGroup = SetgidParentGroup(volume, relative);
  op->gid = parentGroup != static_cast<gid_t>(-1) ? parentGroup : context->gid;
}

// Removes what a create made when handing it over failed, so a failed call leaves nothing.
int Undo(const Volume& volume, const char* relative, int flags, int error) {
  unlinkat(volume.dirFd, relative, flags);
  return error;
}

// Flags for the underlying open. O_APPEND goes: the kernel already chose the offset of an
// appending write (the file's size, under the inode lock), and a positioned write at that
// offset is what the replicator ships. O_DIRECT goes too (its alignment rules would apply to
// libfuse's buffers); the FUSE file is opened direct_io instead, so the page cache is skipped.
int UnderlyingFlags(int flags) { return (flags & ~(O_APPEND | O_DIRECT)) | O_CLOEXEC | O_NOFOLLOW; }

void* Init(fuse_conn_info* connection, fuse_config* config) {
  Volume& volume = CurrentVolume();
  // The real inode numbers (hard links, `find -inum`, tar) instead of libfuse's own.
  config->use_ino = 1;
  // Open files carry their descriptor: no path lookup for read, write, fsync, ftruncate.
  // Intercepting needs the path of every change (the DiskOp names it): libfuse then builds
  // it for writes too, and gives none only for a file unlinked while open (hard_remove),
  // whose changes are nobody's business but its holders'.
  config->nullpath_ok = volume.mode == Mode::kIntercept ? 0 : 1;
  // Unlinking an open file unlinks it underneath (the open descriptor keeps it alive), as
  // a local disk does, instead of renaming it to .fuse_hidden*.
  config->hard_remove = 1;
  // Only this mount changes the files underneath, so the page cache stays valid across
  // opens: reads of cached data never reach this process.
  config->kernel_cache = 1;
  config->entry_timeout = 1.0;
  config->attr_timeout = 1.0;
  config->negative_timeout = 0;
  if (volume.mode == Mode::kReadOnly) {
    // A read-only mount stands over a tree that changes underneath (a secondary's): cache
    // nothing, so a reader sees what is there.
    config->kernel_cache = 0;
    config->entry_timeout = 0;
    config->attr_timeout = 0;
  }
  // Write-through: every write() reaches the handler before it returns to the application
  // (the replicator's synchronous guarantee needs this), so no kernel writeback cache.
  connection->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Not the first version of the flag: with it the kernel still asks for security.capability
  // at every write. FUSE_HANDLE_KILLPRIV_V2 where the kernel offers it (fuse-kernel-io.h):
  // asked once per file; KillSuidgid() clears the set-ID bits the kernel leaves to us
  // (without the flag the kernel does it, with a setattr this file system serves). Its
  // hooks see requests read, not spliced.
  connection->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  connection->want &= ~FUSE_CAP_SPLICE_READ;
  if (KernelOffersKillprivV2()) {
    GrantKillprivV2();
    volume.killprivV2.store(true);
  }
  // POSIX ACLs, when the file system underneath keeps them (its answer for the root's
  // access ACL is ENODATA or the ACL, not EOPNOTSUPP): the kernel then reads them through
  // getxattr and enforces them, and setfacl reaches setxattr (replicated like any other
  // attribute; the file system underneath sets the mode an access ACL implies, on each
  // node). Without DONT_MASK the kernel would apply the umask even under a default ACL,
  // which must replace it: CreationMode() applies it as a local file system does.
  bool keepsAcls = lgetxattr(XattrPath(volume, "/").c_str(), "system.posix_acl_access", nullptr, 0) >= 0 || errno == ENODATA;
  if (keepsAcls && (connection->capable & FUSE_CAP_POSIX_ACL) != 0 && (connection->capable & FUSE_CAP_DONT_MASK) != 0) {
    connection->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
    volume.posixAcl.store(true);
  }
  if (volume.maxWriteSize != 0) connection->max_write = volume.maxWriteSize;
  if (volume.maxReadSize != 0) {
    connection->max_read = volume.maxReadSize;
    if (connection->max_readahead > volume.maxReadSize) connection->max_readahead = volume.maxReadSize;
  }
  return &volume;
}

int Getattr(const char* path, struct stat* status, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  int rc = file != nullptr ? fstat(static_cast<int>(file->fh), status) : fstatat(volume.dirFd, Relative(path), status, AT_SYMLINK_NOFOLLOW);
  return Finish(volume, kGetattr, ResultOf(rc));
}

int Readlink(const char* path, char* buffer, size_t size) {
  Volume& volume = CurrentVolume();
  if (size == 0) return Finish(volume, kReadlink, -EINVAL);
  ssize_t length = readlinkat(volume.dirFd, Relative(path), buffer, size - 1);
  if (length < 0) return Finish(volume, kReadlink, -errno);
  buffer[length] = '\0';
  return Finish(volume, kReadlink, 0);
}

int Mknod(const char* path, mode_t mode, dev_t device) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kMknod, [&] {
    if (Replicating(volume, path, true)) {
      // Only regular files are replicated (the mount is nodev; fifos and sockets are local things).
      if (!S_ISREG(mode)) return -EPERM;
      Intercepted op = OpOn("create", path);
      op.mode = CreationMode(volume, relative, mode) & 07777;
      SetOwner(volume, relative, &op);
      return Ship(volume, op);
    }
    mode = CreationMode(volume, relative, mode);
    if (mknodat(volume.dirFd, relative, mode, device) < 0) return -errno;
    int error = Adopt(volume, -1, relative, mode);
    return error < 0 ? Undo(volume, relative, 0, error) : 0;
  });
}

int Mkdir(const char* path, mode_t mode) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kMkdir, [&] {
    if (Replicating(volume, path, true)) {
      Intercepted op = OpOn("mkdir", path);
      op.mode = CreationMode(volume, relative, mode) & 07777;
      SetOwner(volume, relative, &op);
      return Ship(volume, op);
    }
    mode = CreationMode(volume, relative, mode);
    if (mkdirat(volume.dirFd, relative, mode) < 0) return -errno;
    int error = Adopt(volume, -1, relative, S_IFDIR | mode);
    return error < 0 ? Undo(volume, relative, AT_REMOVEDIR, error) : 0;
  });
}

int Unlink(const char* path) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kUnlink, [&] { return Replicating(volume, path, true) ? Ship(volume, OpOn("unlink", path)) : ResultOf(unlinkat(volume.dirFd, relative, 0)); });
}

int Rmdir(const char* path) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kRmdir, [&] { return Replicating(volume, path, true) ? Ship(volume, OpOn("rmdir", path)) : ResultOf(unlinkat(volume.dirFd, relative, AT_REMOVEDIR)); });
}

// symlink(target, path): `target` is stored as given, never resolved by this process.
int Symlink(const char* target, const char* path) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kSymlink, [&] {
    if (Replicating(volume, path, true)) {
      Intercepted op = OpOn("symlink", path);
      op.other = target;
      SetOwner(volume, relative, &op);
      return Ship(volume, op);
    }
    if (symlinkat(target, volume.dirFd, relative) < 0) return -errno;
    int error = Adopt(volume, -1, relative, S_IFLNK | 0777);
    return error < 0 ? Undo(volume, relative, 0, error) : 0;
  });
}

// RENAME_NOREPLACE and RENAME_EXCHANGE reach renameat2 unchanged, but are not replicated
// (EINVAL when intercepting: callers such as `mv` fall back to a plain rename).
int Rename(const char* from, const char* to, unsigned int flags) {
  Volume& volume = CurrentVolume();
  const char* fromRelative = Relative(from);
  const char* toRelative = Relative(to);
  return Modify(volume, kRename, [&] {
    if (!Replicating(volume, from, to)) return ResultOf(renameat2(volume.dirFd, fromRelative, volume.dirFd, toRelative, flags));
    if (flags != 0) return -EINVAL;
    Intercepted op = OpOn("rename", from);
    op.other = DiskPath(to);
    return Ship(volume, op);
  });
}

int Link(const char* from, const char* to) {
  Volume& volume = CurrentVolume();
  const char* fromRelative = Relative(from);
  const char* toRelative = Relative(to);
  // Replicated as a second name of the file (the kernel refuses a directory before this).
  return Modify(volume, kLink, [&] {
    if (!Replicating(volume, from, to)) return ResultOf(linkat(volume.dirFd, fromRelative, volume.dirFd, toRelative, 0));
    Intercepted op = OpOn("link", from);
    op.other = DiskPath(to);
    return Ship(volume, op);
  });
}

int Chmod(const char* path, mode_t mode, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  int result = Modify(volume, kChmod, [&] {
    if (Replicating(volume, path)) {
      Intercepted op = OpOn("setattr", path);
      op.mode = mode & 07777;
      return Ship(volume, op);
    }
    // Never through a symlink: an lchmod (fchmodat2) of a link must not reach its target.
    return ResultOf(file != nullptr ? fchmod(static_cast<int>(file->fh), mode) : fchmodat(volume.dirFd, relative, mode, AT_SYMLINK_NOFOLLOW));
  });
  // Set-ID bits may have come: what KillSuidgid() found of open files before now no longer
  // holds (after the change, so that no look between the two is taken for the new epoch's).
  volume.setIdEpoch.fetch_add(1, std::memory_order_acq_rel);
  return result;
}

int Chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kChown, [&] {
    if (Replicating(volume, path)) {
      Intercepted op = OpOn("chown", path);
      op.uid = uid == static_cast<uid_t>(-1) ? -1 : static_cast<int64_t>(uid);
      op.gid = gid == static_cast<gid_t>(-1) ? -1 : static_cast<int64_t>(gid);
      return Ship(volume, op);
    }
    return ResultOf(file != nullptr ? fchown(static_cast<int>(file->fh), uid, gid) : fchownat(volume.dirFd, relative, uid, gid, AT_SYMLINK_NOFOLLOW));
  });
}

// Whether the process of the request being served has `gid` as its group or one of its
// supplementary groups (libfuse reads them from /proc: this is not for every request).
bool CallerInGroup(gid_t gid) {
  if (fuse_get_context()->gid == gid) return true;
  gid_t groups[256];
  int count = fuse_getgroups(256, groups);
  for (int index = 0; index < count && index < 256; index++) {
    if (groups[index] == gid) return true;
  }
  return false;
}

// Clears the set-user-ID and set-group-ID bits by the kernel's rule when the kernel asked (a
// writer without CAP_FSETID, on a mount granted FUSE_HANDLE_KILLPRIV_V2), as a local file
// system does before a write or a truncate: the daemon's own writes, as root, would keep
// them. Replicated as a setattr. 0 or -errno.
int KillSuidgid(Volume& volume, const char* path, int fd) {
  if (!volume.killprivV2.load(std::memory_order_relaxed) || !KillSuidgidAsked()) return 0;
  uint64_t epoch = volume.setIdEpoch.load(std::memory_order_acquire);
  bool cached = fd >= 0 && fd < Volume::kSetIdCacheSize;
  if (cached && volume.setIdCache[fd].load(std::memory_order_relaxed) == epoch << 1) return 0;
  struct stat status {};
  int rc = fd >= 0 ? fstat(fd, &status) : fstatat(volume.dirFd, Relative(path), &status, AT_SYMLINK_NOFOLLOW);
  if (rc < 0) return -errno;
  bool setId = (status.st_mode & (S_ISUID | S_ISGID)) != 0;
  if (cached) volume.setIdCache[fd].store(setId ? 0 : epoch << 1, std::memory_order_relaxed);
  // The kernel's rule (setattr_should_drop_suidgid): set-group-ID goes when the file is
  // group-executable, or when the writer is not in the file's group.
  mode_t kill = status.st_mode & S_ISUID;
  if ((status.st_mode & S_ISGID) != 0 && ((status.st_mode & S_IXGRP) != 0 || !CallerInGroup(status.st_gid))) kill |= S_ISGID;
  if (!S_ISREG(status.st_mode) || kill == 0) return 0;
  mode_t mode = status.st_mode & 07777 & ~kill;
  if (Replicating(volume, path)) {
    Intercepted op = OpOn("setattr", path);
    op.mode = mode;
    return Ship(volume, op);
  }
  return ResultOf(fd >= 0 ? fchmod(fd, mode) : fchmodat(volume.dirFd, Relative(path), mode, 0));
}

int ShipTruncate(Volume& volume, const char* path, off_t size) {
  Intercepted op = OpOn("truncate", path);
  op.size = size;
  return Ship(volume, op);
}

// truncate(2) on a path opens the file underneath for writing and truncates that descriptor.
int Truncate(const char* path, off_t size, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kTruncate, [&] {
    int killed = KillSuidgid(volume, path, file != nullptr ? static_cast<int>(file->fh) : -1);
    if (killed < 0) return killed;
    if (Replicating(volume, path)) return ShipTruncate(volume, path, size);
    if (file != nullptr) return ResultOf(ftruncate(static_cast<int>(file->fh), size));
    int fd = openat(volume.dirFd, relative, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -errno;
    int result = ResultOf(ftruncate(fd, size));
    close(fd);
    return result;
  });
}

int OpenUnderlying(const Volume& volume, const char* relative, fuse_file_info* file, int dropFlags = 0) {
  int fd = openat(volume.dirFd, relative, UnderlyingFlags(file->flags & ~dropFlags));
  if (fd < 0) return -errno;
  file->fh = static_cast<uint64_t>(fd);
  if ((file->flags & O_DIRECT) != 0) file->direct_io = 1;
  // Closing never needs this process (no FLUSH request on close).
  file->noflush = 1;
  return 0;
}

// An open with O_TRUNC (the kernel folds it into the open: atomic_o_trunc) changes the file,
// so it goes through the seam; any other open does not.
int Open(const char* path, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  // Opening for writing is refused on a read-only file system, as on a local one.
  if (volume.mode == Mode::kReadOnly && (file->flags & O_ACCMODE) != O_RDONLY) return Finish(volume, kOpen, -EROFS);
  if ((file->flags & O_TRUNC) != 0) {
    return Modify(volume, kOpen, [&] {
      int killed = KillSuidgid(volume, path, -1);
      if (killed < 0) return killed;
      if (!Replicating(volume, path)) return OpenUnderlying(volume, relative, file);
      int rc = ShipTruncate(volume, path, 0);
      return rc < 0 ? rc : OpenUnderlying(volume, relative, file, O_TRUNC);
    });
  }
  return Finish(volume, kOpen, OpenUnderlying(volume, relative, file));
}

// Intercepting a create: the core creates the file (exclusively), then it is opened here.
// Without O_EXCL an existing file is simply opened (two creators raced; the kernel sends a
// create only for a name it did not find), truncated first for O_TRUNC.
int ShipCreate(Volume& volume, const char* path, const char* relative, mode_t mode, fuse_file_info* file) {
  Intercepted op = OpOn("create", path);
  op.mode = CreationMode(volume, relative, mode) & 07777;
  SetOwner(volume, relative, &op);
  int rc = Ship(volume, op);
  if (rc == -EEXIST && (file->flags & O_EXCL) == 0) {
    rc = (file->flags & O_TRUNC) != 0 ? ShipTruncate(volume, path, 0) : 0;
  }
  if (rc < 0) return rc;
  return OpenUnderlying(volume, relative, file, O_CREAT | O_EXCL | O_TRUNC);
}

int Create(const char* path, mode_t mode, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kCreate, [&] {
    if (Replicating(volume, path, true)) return ShipCreate(volume, path, relative, mode, file);
    mode = CreationMode(volume, relative, mode);
    int fd = openat(volume.dirFd, relative, UnderlyingFlags(file->flags) | O_CREAT, mode);
    if (fd < 0) return -errno;
    int error = Adopt(volume, fd, relative, S_IFREG | mode);
    if (error < 0) {
      close(fd);
      return Undo(volume, relative, 0, error);
    }
    file->fh = static_cast<uint64_t>(fd);
    if ((file->flags & O_DIRECT) != 0) file->direct_io = 1;
    file->noflush = 1;
    return 0;
  });
}

int Read(const char* path, char* buffer, size_t size, off_t offset, fuse_file_info* file) {
  (void)path;
  Volume& volume = CurrentVolume();
  ssize_t count = pread(static_cast<int>(file->fh), buffer, size, offset);
  if (count < 0) return Finish(volume, kRead, -errno);
  volume.bytesRead.Add(static_cast<uint64_t>(count));
  return Finish(volume, kRead, static_cast<int>(count));
}

int Write(const char* path, const char* buffer, size_t size, off_t offset, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  return Modify(volume, kWrite, [&] {
    int killed = KillSuidgid(volume, path, static_cast<int>(file->fh));
    if (killed < 0) return killed;
    if (Replicating(volume, path)) {
      Intercepted op = OpOn("write", path);
      op.offset = offset;
      op.data = buffer;
      op.length = size;
      int rc = 0;
      if (!OfferToLane(volume, op, file, false, &rc)) rc = Ship(volume, op);
      if (rc < 0) return rc;
      volume.bytesWritten.Add(size);
      return static_cast<int>(size);
    }
    ssize_t count = pwrite(static_cast<int>(file->fh), buffer, size, offset);
    if (count < 0) return -errno;
    volume.bytesWritten.Add(static_cast<uint64_t>(count));
    return static_cast<int>(count);
  });
}

int Statfs(const char* path, struct statvfs* status) {
  (void)path;
  Volume& volume = CurrentVolume();
  return Finish(volume, kStatfs, ResultOf(fstatvfs(volume.dirFd, status)));
}

int Release(const char* path, fuse_file_info* file) {
  (void)path;
  Volume& volume = CurrentVolume();
  int fd = static_cast<int>(file->fh);
  // Before the number can be another file's.
  if (fd >= 0 && fd < Volume::kSetIdCacheSize) volume.setIdCache[fd].store(0, std::memory_order_relaxed);
  return Finish(volume, kRelease, ResultOf(close(fd)));
}

int Fsync(const char* path, int dataOnly, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  return Modify(volume, kFsync, [&] {
    if (Replicating(volume, path)) {
      Intercepted op = OpOn("fsync", path);
      int rc = 0;
      if (OfferToLane(volume, op, file, dataOnly != 0, &rc)) return rc;
      return Ship(volume, op);
    }
    int fd = static_cast<int>(file->fh);
    return ResultOf(dataOnly != 0 ? fdatasync(fd) : fsync(fd));
  });
}

// An open directory: the stream and where the kernel is in it. An entry that did not fit
// in the kernel's buffer is kept for the next call.
struct DirHandle {
  DIR* stream = nullptr;
  off_t offset = 0;
  dirent* pending = nullptr;
};

DirHandle* DirOf(const fuse_file_info* file) { return reinterpret_cast<DirHandle*>(static_cast<uintptr_t>(file->fh)); }

// The directory is opened again underneath (a descriptor of its own, so concurrent listings
// do not share an offset) and read through fdopendir.
int Opendir(const char* path, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  int fd = openat(volume.dirFd, Relative(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Finish(volume, kOpendir, -errno);
  DIR* stream = fdopendir(fd);
  if (stream == nullptr) {
    int error = errno;
    close(fd);
    return Finish(volume, kOpendir, -error);
  }
  auto* handle = new DirHandle();
  handle->stream = stream;
  file->fh = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle));
  return Finish(volume, kOpendir, 0);
}

int Readdir(const char* path, void* buffer, fuse_fill_dir_t fill, off_t offset, fuse_file_info* file, fuse_readdir_flags flags) {
  (void)path;
  (void)flags;
  Volume& volume = CurrentVolume();
  DirHandle* handle = DirOf(file);
  if (offset != handle->offset) {
    seekdir(handle->stream, offset);
    handle->pending = nullptr;
    handle->offset = offset;
  }
  for (;;) {
    if (handle->pending == nullptr) {
      errno = 0;
      handle->pending = readdir(handle->stream);
      if (handle->pending == nullptr) {
        if (errno != 0) return Finish(volume, kReaddir, -errno);
        break;
      }
    }
    struct stat status {};
    status.st_ino = handle->pending->d_ino;
    status.st_mode = static_cast<mode_t>(handle->pending->d_type) << 12;
    off_t next = telldir(handle->stream);
    if (fill(buffer, handle->pending->d_name, &status, next, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
    handle->pending = nullptr;
    handle->offset = next;
  }
  return Finish(volume, kReaddir, 0);
}

int Releasedir(const char* path, fuse_file_info* file) {
  (void)path;
  Volume& volume = CurrentVolume();
  DirHandle* handle = DirOf(file);
  closedir(handle->stream);
  delete handle;
  return Finish(volume, kReleasedir, 0);
}

int Fsyncdir(const char* path, int dataOnly, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  return Modify(volume, kFsyncdir, [&] {
    if (Replicating(volume, path)) return Ship(volume, OpOn("fsync", path));
    int fd = dirfd(DirOf(file)->stream);
    return ResultOf(dataOnly != 0 ? fdatasync(fd) : fsync(fd));
  });
}

int Utimens(const char* path, const struct timespec times[2], fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  const char* relative = Relative(path);
  return Modify(volume, kUtimens, [&] {
    if (Replicating(volume, path)) {
      // Replicated as a times operation: "now" read here, so that both nodes set the same.
      Intercepted op = OpOn("times", path);
      struct timespec now = {};
      clock_gettime(CLOCK_REALTIME, &now);
      auto take = [&](const struct timespec* time, bool* has, struct timespec* to) {
        if (time != nullptr && time->tv_nsec == UTIME_OMIT) return;
        *has = true;
        *to = time == nullptr || time->tv_nsec == UTIME_NOW ? now : *time;
      };
      take(times == nullptr ? nullptr : &times[0], &op.hasAtime, &op.atime);
      take(times == nullptr ? nullptr : &times[1], &op.hasMtime, &op.mtime);
      return Ship(volume, op);
    }
    return ResultOf(file != nullptr ? futimens(static_cast<int>(file->fh), times) : utimensat(volume.dirFd, relative, times, AT_SYMLINK_NOFOLLOW));
  });
}

int Fallocate(const char* path, int mode, off_t offset, off_t length, fuse_file_info* file) {
  Volume& volume = CurrentVolume();
  return Modify(volume, kFallocate, [&] {
    if (file == nullptr) return -EOPNOTSUPP;
    int fd = static_cast<int>(file->fh);
    if (!Replicating(volume, path) || mode == FALLOC_FL_KEEP_SIZE) return ResultOf(fallocate(fd, mode, offset, length));
    // Only a plain allocation is replicated, as what it means for the content: a file
    // extended with zeros. The space is reserved here first (without changing the size),
    // so a full disk answers ENOSPC before anything changed.
    if (mode != 0) return -EOPNOTSUPP;
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length) < 0) return -errno;
    struct stat status {};
    if (fstat(fd, &status) < 0) return -errno;
    return offset + length > status.st_size ? ShipTruncate(volume, path, offset + length) : 0;
  });
}

// Reads are served here, never through the core: a size query (size 0) included.
int Getxattr(const char* path, const char* name, char* value, size_t size) {
  Volume& volume = CurrentVolume();
  ssize_t length = lgetxattr(XattrPath(volume, path).c_str(), name, value, size);
  int rc = length < 0 ? -errno : static_cast<int>(length);
  // The kernel takes an ACL's EOPNOTSUPP for an error of the permission check itself: a
  // path underneath on a file system without ACLs (a mount inside the tree) has none.
  if (rc == -EOPNOTSUPP && volume.posixAcl.load(std::memory_order_relaxed) && std::strncmp(name, "system.posix_acl_", 17) == 0) rc = -ENODATA;
  return Finish(volume, kGetxattr, rc);
}

int Listxattr(const char* path, char* list, size_t size) {
  Volume& volume = CurrentVolume();
  ssize_t length = llistxattr(XattrPath(volume, path).c_str(), list, size);
  return Finish(volume, kListxattr, length < 0 ? -errno : static_cast<int>(length));
}

// Replicated as a DiskOp: the name, the value and the flags (XATTR_CREATE: EEXIST when it
// is there; XATTR_REPLACE: ENODATA when it is not) as the application gave them.
int Setxattr(const char* path, const char* name, const char* value, size_t size, int flags) {
  Volume& volume = CurrentVolume();
  int result = Modify(volume, kSetxattr, [&] {
    if (!Replicating(volume, path)) return ResultOf(lsetxattr(XattrPath(volume, path).c_str(), name, value, size, flags));
    Intercepted op = OpOn("setxattr", path);
    op.other = name;
    op.data = value;
    op.length = size;
    op.size = flags;
    return Ship(volume, op);
  });
  // An access ACL sets the mode's group bits and may clear its set-group-ID bit: what
  // KillSuidgid() found of open files no longer holds (as after a chmod).
  if (std::strcmp(name, "system.posix_acl_access") == 0) volume.setIdEpoch.fetch_add(1, std::memory_order_acq_rel);
  return result;
}

int Removexattr(const char* path, const char* name) {
  Volume& volume = CurrentVolume();
  return Modify(volume, kRemovexattr, [&] {
    if (!Replicating(volume, path)) return ResultOf(lremovexattr(XattrPath(volume, path).c_str(), name));
    Intercepted op = OpOn("removexattr", path);
    op.other = name;
    return Ship(volume, op);
  });
}

off_t Lseek(const char* path, off_t offset, int whence, fuse_file_info* file) {
  (void)path;
  Volume& volume = CurrentVolume();
  off_t result = lseek(static_cast<int>(file->fh), offset, whence);
  return Finish(volume, kLseek, result < 0 ? static_cast<off_t>(-errno) : result);
}

fuse_operations MakeOperations() {
  fuse_operations operations{};
  operations.init = Init;
  operations.getattr = Getattr;
  operations.readlink = Readlink;
  operations.mknod = Mknod;
  operations.mkdir = Mkdir;
  operations.unlink = Unlink;
  operations.rmdir = Rmdir;
  operations.symlink = Symlink;
  operations.rename = Rename;
  operations.link = Link;
  operations.chmod = Chmod;
  operations.chown = Chown;
  operations.truncate = Truncate;
  operations.open = Open;
  operations.create = Create;
  operations.read = Read;
  operations.write = Write;
  operations.statfs = Statfs;
  operations.release = Release;
  operations.fsync = Fsync;
  operations.opendir = Opendir;
  operations.readdir = Readdir;
  operations.releasedir = Releasedir;
  operations.fsyncdir = Fsyncdir;
  operations.utimens = Utimens;
  operations.fallocate = Fallocate;
  operations.lseek = Lseek;
  operations.setxattr = Setxattr;
  operations.getxattr = Getxattr;
  operations.listxattr = Listxattr;
  operations.removexattr = Removexattr;
  // No flush (closing needs nothing from us), no access (default_permissions: the kernel
  // checks permissions itself), no locks (the kernel keeps POSIX and flock locks locally,
  // which is right for one mount per directory).
  return operations;
}

}  // namespace

void LearnExcluded(Volume& volume, const std::string& path) {
  if (path.empty()) return;
  std::lock_guard<std::shared_mutex> hold(volume.excludedMutex);
  if (volume.excludedPaths.size() >= Volume::kExcludedPathsMax) volume.excludedPaths.clear();
  volume.excludedPaths.insert(path);
  volume.anyExcludedPath.store(true, std::memory_order_release);
}

const fuse_operations& PassthroughOperations() {
  static const fuse_operations operations = MakeOperations();
  return operations;
}

}  // namespace fusefs
}  // namespace tandem
