// Entry point of the tandem_fuse addon: mounts the passthrough file system of
// fuse-passthrough.cc over a directory and serves it from native threads.
//
//   new FuseMount(dir, { mode, intercept, allowOther, autoUnmount, maxReadSize,
//                        maxWriteSize, threadCountMax, idleThreadCountMax })
//     opens `dir` (O_PATH) FIRST, then mounts FUSE over it; the files underneath stay
//     reachable through that handle only. Returns once the kernel has the mount.
//     mode: "passthrough" (default), "readonly" (changes refused with EROFS) or
//     "intercept": each change is handed to `intercept(id, op)` on the JavaScript thread
//     (op in DiskOp form) and the application waits until `.answer(id, errno)`.
//   .answer(id, errno)   0 or a positive errno for an intercepted operation.
//   .handleFd   the directory handle (O_PATH): /proc/self/fd/<handleFd> reaches the tree
//     underneath from this process.
//   .stats()   counters (operations by kind, errors, bytes), read from atomics.
//   .unmount({ force })   umount2; with force the connection is aborted first (open files
//     get ENOTCONN) and a busy mount is detached. Joins the threads. Idempotent.
//
// Life cycle. The session loop (fuse_loop_mt, clone_fd) runs on a native thread of its own
// with every signal blocked; libfuse's workers inherit that. A mount lasts until unmount(),
// whatever happens to its JS object; mounts still alive when their Node environment is torn
// down, or when the process calls exit(), are unmounted with force. On SIGKILL nothing here runs: with autoUnmount (the default) libfuse's fusermount3
// helper notices the process is gone and detaches the mount; without it the directory
// answers ENOTCONN until `fusermount3 -u -z DIR` or `umount -l DIR`.

#include <napi.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fuse-passthrough.h"
#include "fuse-lane.h"
#include "fuse-kernel-io.h"

#include <fuse_lowlevel.h>

namespace tandem {
namespace fusefs {
namespace {

// The kernel's largest request (FUSE_MAX_MAX_PAGES, 256 pages).
constexpr unsigned kIoSizeMax = 1u << 20;
constexpr unsigned kIoSizeMin = 4096;
constexpr unsigned kThreadCountMaxLimit = 256;
// statfs(2)'s f_type of a FUSE mount.
constexpr long kFuseSuperMagic = 0x65735546;
// How long a clean unmount waits for the auto_unmount helper to exit: 1 s at most.
constexpr int kHelperWaitAttemptMax = 1000;
constexpr useconds_t kHelperWaitStepUs = 1000;

// ---- libfuse's log: kept, so that a failed mount can say why ----

std::mutex logMutex;
std::string lastLogMessage;

void KeepLog(enum fuse_log_level level, const char* format, va_list arguments) {
  (void)level;
  char text[512];
  std::vsnprintf(text, sizeof(text), format, arguments);
  size_t length = std::strlen(text);
  while (length > 0 && text[length - 1] == '\n') text[--length] = '\0';
  std::lock_guard<std::mutex> lock(logMutex);
  lastLogMessage = text;
}

std::string TakeLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  std::string message = lastLogMessage;
  lastLogMessage.clear();
  return message;
}

std::string PeekLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  return lastLogMessage;
}

// ---- errors: a stable `code` and errno details, as Node's own system errors have ----

Napi::Error CodedError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "E" + std::to_string(err);
  Napi::Error error = CodedError(env, code, what + ": " + std::strerror(err) + " (" + code + ")");
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

// ---- one mount ----

struct Settings {
  Mode mode = Mode::kPassthrough;
  bool allowOther = false;
  bool autoUnmount = true;
  unsigned maxReadSize = 0;
  unsigned maxWriteSize = 0;
  unsigned threadCountMax = 16;
  unsigned idleThreadCountMax = 8;
  std::vector<std::string> excluded;
};

// The descriptors of this process that are sockets, to find the one libfuse leaves open to
// its fusermount3 helper (auto_unmount) without the close-on-exec flag.
std::set<int> OpenSockets() {
  std::set<int> sockets;
  DIR* directory = opendir("/proc/self/fd");
  if (directory == nullptr) return sockets;
  while (dirent* entry = readdir(directory)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(directory)) continue;
    struct stat status {};
    if (fstat(static_cast<int>(fd), &status) == 0 && S_ISSOCK(status.st_mode)) sockets.insert(static_cast<int>(fd));
  }
  closedir(directory);
  return sockets;
}

bool IsUnixStream(int fd) {
  int domain = 0;
  int type = 0;
  socklen_t size = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &size) < 0) return false;
  size = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) < 0) return false;
  return domain == AF_UNIX && type == SOCK_STREAM;
}

// This process's children (of every thread), to find the fusermount3 helper libfuse starts.
std::set<pid_t> ChildPids() {
  std::set<pid_t> children;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return children;
  while (dirent* task = readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + task->d_name + "/children";
    FILE* file = std::fopen(path.c_str(), "r");
    if (file == nullptr) continue;
    long pid = 0;
    while (std::fscanf(file, "%ld", &pid) == 1) children.insert(static_cast<pid_t>(pid));
    std::fclose(file);
  }
  closedir(tasks);
  return children;
}

bool IsFusermount(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/comm";
  FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return false;
  char name[32] = {};
  bool found = std::fgets(name, sizeof(name), file) != nullptr && std::strncmp(name, "fusermount", 10) == 0;
  std::fclose(file);
  return found;
}

// Intercept mode: hands each operation to a JavaScript function through a threadsafe
// function and blocks the worker until JavaScript answers it by id. Operations still
// waiting when the mount stops, or that can no longer reach JavaScript (its environment
// is ending), are answered EIO: a worker never waits forever.
class JsInterceptor : public Interceptor, public std::enable_shared_from_this<JsInterceptor> {
 public:
  JsInterceptor(Napi::Env env, Napi::Function intercept) {
    function_ = Napi::ThreadSafeFunction::New(env, intercept, "tandem-fuse-intercept", 0, 1);
    // The mount, not a pending operation, decides how long the process lives.
    function_.Unref(env);
  }

  int Submit(const Intercepted& op) override {
    auto shared = std::make_shared<Waiting>();
    shared->op = &op;
    Waiting& waiting = *shared;
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return -EIO;
      id = NextId();
      waiting_.emplace(id, shared);
    }
    auto* boxed = new uint64_t(id);
    // The call may run after the mount is gone (queued before its Close): it keeps this
    // interceptor alive until then.
    std::shared_ptr<JsInterceptor> self = shared_from_this();
    napi_status status = function_.BlockingCall(boxed, [self](Napi::Env env, Napi::Function intercept, uint64_t* data) {
      uint64_t callId = *data;
      delete data;
      self->Deliver(env, intercept, callId);
    });
    if (status != napi_ok) {
      delete boxed;
      Answer(id, EIO);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    waiting.answered.wait(lock, [&] { return waiting.done; });
    return waiting.result;
  }

  uint64_t Enlist(const Intercepted& op) override {
    auto waiting = std::make_shared<Waiting>();
    waiting->op = &op;
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return 0;
    uint64_t id = NextId();
    waiting_.emplace(id, waiting);
    enlisted_.emplace(id, waiting);
    return id;
  }

  int WaitFor(uint64_t id) override {
    std::unique_lock<std::mutex> lock(mutex_);
    auto entry = enlisted_.find(id);
    if (entry == enlisted_.end()) return -EIO;
    std::shared_ptr<Waiting> waiting = entry->second;
    enlisted_.erase(entry);
    waiting->answered.wait(lock, [&] { return waiting->done; });
    return waiting->result;
  }

  bool Post(std::function<void()> run) override {
    auto* boxed = new std::function<void()>(std::move(run));
    std::shared_ptr<JsInterceptor> self = shared_from_this();
    napi_status status = function_.BlockingCall(boxed, [self](Napi::Env env, Napi::Function, std::function<void()>* data) {
      std::unique_ptr<std::function<void()>> owned(data);
      if (env != nullptr) (*owned)();
    });
    if (status != napi_ok) delete boxed;
    return status == napi_ok;
  }

  // Answers operation `id` with 0 or a positive errno; false when it is not waiting.
  bool Answer(uint64_t id, int err) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto entry = waiting_.find(id);
    if (entry == waiting_.end()) return false;
    entry->second->result = err == 0 ? 0 : -err;
    entry->second->done = true;
    entry->second->answered.notify_one();
    waiting_.erase(entry);
    return true;
  }

  // No operation is handed over any more; every waiting one is answered EIO.
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      closed_ = true;
      for (auto& entry : waiting_) {
        entry.second->result = -EIO;
        entry.second->done = true;
        entry.second->answered.notify_one();
      }
      waiting_.clear();
    }
    function_.Release();
  }

  size_t WaitingCount() {
    std::lock_guard<std::mutex> lock(mutex_);
    return waiting_.size();
  }

 private:
  struct Waiting {
    const Intercepted* op = nullptr;
    std::condition_variable answered;
    bool done = false;
    int result = 0;
  };

  // On the JavaScript thread: builds the DiskOp while the worker still waits (the entry is
  // there), then calls intercept(id, op) outside the lock (it may answer at once).
  void Deliver(Napi::Env env, Napi::Function intercept, uint64_t id) {
    if (env == nullptr) {
      Answer(id, EIO);
      return;
    }
    Napi::Object op = Napi::Object::New(env);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto entry = waiting_.find(id);
      if (entry == waiting_.end()) return;  // answered EIO by Close() already
      Describe(env, *entry->second->op, op);
    }
    intercept.Call({Napi::Number::New(env, static_cast<double>(id)), op});
  }

public:
  static void Describe(Napi::Env env, const Intercepted& from, Napi::Object op) {
    std::string kind = from.kind;
    op.Set("kind", kind);
    auto number = [&](const char* name, double value) { op.Set(name, Napi::Number::New(env, value)); };
    if (kind == "setxattr" || kind == "removexattr") op.Set("name", from.other);
    if (kind == "setxattr") {
      Napi::ArrayBuffer bytes = Napi::ArrayBuffer::New(env, from.length);
      if (from.length > 0) std::memcpy(bytes.Data(), from.data, from.length);
      op.Set("value", Napi::Uint8Array::New(env, from.length, bytes, 0));
      if ((from.size & XATTR_CREATE) != 0) op.Set("how", "create");
      if ((from.size & XATTR_REPLACE) != 0) op.Set("how", "replace");
    }
    if (kind == "rename" || kind == "link") {
      op.Set("from", from.path);
      op.Set("to", from.other);
    } else {
      op.Set("path", from.path);
    }
    if (kind == "write") {
      Napi::ArrayBuffer bytes = Napi::ArrayBuffer::New(env, from.length);
      if (from.length > 0) std::memcpy(bytes.Data(), from.data, from.length);
      number("offset", static_cast<double>(from.offset));
      op.Set("data", Napi::Uint8Array::New(env, from.length, bytes, 0));
    }
    if (kind == "truncate") number("size", static_cast<double>(from.size));
    if (kind == "create" || kind == "mkdir" || kind == "setattr") number("mode", from.mode);
    if (kind == "symlink") op.Set("target", from.other);
    if (kind == "times") {
      auto time = [&](const char* name, bool has, const struct timespec& value) {
        if (!has) {
          op.Set(name, env.Null());
          return;
        }
        Napi::Object at = Napi::Object::New(env);
        at.Set("s", Napi::Number::New(env, static_cast<double>(value.tv_sec)));
        at.Set("ns", Napi::Number::New(env, static_cast<double>(value.tv_nsec)));
        op.Set(name, at);
      };
      time("atime", from.hasAtime, from.atime);
      time("mtime", from.hasMtime, from.mtime);
    }
    if (kind == "chown") {
      number("uid", static_cast<double>(from.uid));
      number("gid", static_cast<double>(from.gid));
    }
    if (from.hasOwner) {
      Napi::Object owner = Napi::Object::New(env);
      owner.Set("uid", Napi::Number::New(env, static_cast<double>(from.uid)));
      owner.Set("gid", Napi::Number::New(env, static_cast<double>(from.gid)));
      op.Set("owner", owner);
    }
  }

private:
  Napi::ThreadSafeFunction function_;
  std::mutex mutex_;
  bool closed_ = false;
  // Ids are unique across every mount of the process: an answer for an operation of a mount
  // that is gone (a lane report delivered after a remount) can never reach another's.
  static uint64_t NextId() {
    static std::atomic<uint64_t> last{0};
    return ++last;
  }
  std::map<uint64_t, std::shared_ptr<Waiting>> waiting_;
  // Enlisted by the lane: kept until WaitFor takes them (the answer may come first).
  std::map<uint64_t, std::shared_ptr<Waiting>> enlisted_;
};

class Session {
 public:
  Session(std::string dir, Settings settings, std::shared_ptr<JsInterceptor> interceptor, std::shared_ptr<Lane> lane = nullptr)
      : dir_(std::move(dir)), settings_(settings), interceptor_(std::move(interceptor)), lane_(std::move(lane)) {}
  ~Session() { Stop(true); }

  const std::string& dir() const { return dir_; }
  const Volume& volume() const { return volume_; }
  Volume& volume() { return volume_; }
  JsInterceptor* interceptor() const { return interceptor_.get(); }
  bool mounted() const { return state_.load() == State::kServing; }
  bool loopEnded() const { return loopEnded_.load(); }
  int loopResult() const { return loopResult_.load(); }

  // Opens the directory, mounts over it and starts serving. On failure everything it did
  // is undone, `message` says what failed and `err` is its errno (0: libfuse's message).
  bool Start(int* err, std::string* message) {
    volume_.mode = settings_.mode;
    volume_.interceptor = interceptor_.get();
    volume_.lane = interceptor_ == nullptr ? nullptr : lane_.get();
    volume_.daemonUid = geteuid();
    volume_.daemonGid = getegid();
    volume_.maxReadSize = settings_.maxReadSize;
    volume_.maxWriteSize = settings_.maxWriteSize;
    volume_.excludedPrefixes = settings_.excluded;
    volume_.dirFd = open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (volume_.dirFd < 0) {
      *err = errno;
      *message = "open " + dir_;
      return false;
    }
    if (!CheckUnderneath(err, message)) return false;
    std::vector<std::string> arguments = {"tandem-fuse", "-o", MountOptions()};
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    TakeLog();
    fuse_ = fuse_new(&args, &PassthroughOperations(), sizeof(fuse_operations), &volume_);
    if (fuse_ == nullptr) return Fail(err, message, "fuse_new");
    std::set<int> socketsBefore = OpenSockets();
    std::set<pid_t> childrenBefore = ChildPids();
    if (fuse_mount(fuse_, dir_.c_str()) != 0) return Fail(err, message, "fuse_mount " + dir_);
    // Our reads and writes of the device (fuse-kernel-io.h); without them, as before, slower.
    if (!InstallKernelIo(fuse_get_session(fuse_))) fuse_log(FUSE_LOG_WARNING, "tandem: custom I/O refused; every write will ask for security.capability\n");
    if (settings_.autoUnmount) KeepHelper(socketsBefore, childrenBefore);
    if (volume_.lane != nullptr) lane_->Attach(interceptor_.get());
    state_.store(State::kServing);
    thread_ = std::thread([this] { Loop(); });
    return true;
  }

  // Unmounts and waits for the threads; 0, or the errno of a refused unmount (EBUSY:
  // files are open under the mount and `force` was not given). Idempotent.
  int Stop(bool force) {
    std::lock_guard<std::mutex> lock(stopMutex_);
    if (state_.load() != State::kServing) return 0;
    // An operation waiting for JavaScript would keep its worker, and the loop, from ending.
    // Only with force: a refused unmount (EBUSY) leaves the mount serving as before.
    if (force && lane_ != nullptr) lane_->Detach();
    if (force && interceptor_ != nullptr) interceptor_->Close();
    // A loop that already ended was unmounted from outside (umount, fusermount3 -u):
    // never unmount again, something else may be mounted on the directory by now.
    if (!loopEnded_.load()) {
      int err = Unmount(force);
      if (err != 0) return err;
    }
    if (lane_ != nullptr) lane_->Detach();
    if (interceptor_ != nullptr) interceptor_->Close();
    thread_.join();
    // The connection is gone, so this only closes libfuse's device descriptor.
    fuse_unmount(fuse_);
    fuse_destroy(fuse_);
    fuse_ = nullptr;
    ReleaseHelper();
    close(volume_.dirFd);
    volume_.dirFd = -1;
    state_.store(State::kStopped);
    return 0;
  }

 private:
  enum class State { kNew, kServing, kStopped };

  std::string MountOptions() const {
    // default_permissions: the kernel checks access against the attributes the files have
    // underneath, with the caller's credentials; this process (root) never decides it.
    std::string options = "default_permissions,fsname=tandem,subtype=tandem";
    if (settings_.allowOther) options += ",allow_other";
    if (settings_.autoUnmount) options += ",auto_unmount";
    if (settings_.maxReadSize != 0) options += ",max_read=" + std::to_string(settings_.maxReadSize);
    return options;
  }

  // The directory must be a real one: not a FUSE mount, and above all not the dead mount
  // of a crashed daemon (O_PATH opens it without asking anyone; any use then fails).
  bool CheckUnderneath(int* err, std::string* message) {
    struct statfs status {};
    if (fstatfs(volume_.dirFd, &status) < 0) {
      *err = errno;
      *message = *err == ENOTCONN ? dir_ + " holds the mount of a FUSE process that died; detach it with `fusermount3 -u -z " + dir_ + "` (or `umount -l`), then mount again"
                                   : "statfs " + dir_;
    } else if (status.f_type == kFuseSuperMagic) {
      *err = 0;
      *message = dir_ + " is already a FUSE mount (a replicator still running, or another FUSE file system); unmount it first";
    } else {
      return true;
    }
    close(volume_.dirFd);
    volume_.dirFd = -1;
    if (interceptor_ != nullptr) interceptor_->Close();
    state_.store(State::kStopped);
    return false;
  }

  bool Fail(int* err, std::string* message, const std::string& what) {
    *err = 0;
    if (interceptor_ != nullptr) interceptor_->Close();
    std::string log = TakeLog();
    *message = what + " failed" + (log.empty() ? "" : ": " + log);
    if (fuse_ != nullptr) fuse_destroy(fuse_);
    fuse_ = nullptr;
    close(volume_.dirFd);
    volume_.dirFd = -1;
    state_.store(State::kStopped);
    return false;
  }

  // With auto_unmount, libfuse (3.14) leaves a fusermount3 running that detaches the mount
  // once this process is gone (it waits for the end of a socket pair), and keeps its end of
  // that socket open, inheritable: every child process (the application, its daemons) would
  // hold it, and the helper would wait for the last of them instead of this process. Mark it
  // close-on-exec, and keep it and the helper's pid, to let the helper go and reap it at a
  // clean unmount (nobody else waits for it).
  void KeepHelper(const std::set<int>& socketsBefore, const std::set<pid_t>& childrenBefore) {
    int deviceFd = fuse_session_fd(fuse_get_session(fuse_));
    for (int fd : OpenSockets()) {
      if (socketsBefore.count(fd) != 0 || fd == deviceFd || !IsUnixStream(fd)) continue;
      // Node's and glibc's own sockets are close-on-exec: only libfuse's is not.
      int flags = fcntl(fd, F_GETFD);
      if (flags < 0 || (flags & FD_CLOEXEC) != 0) continue;
      fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
      helperSocket_ = fd;
    }
    for (pid_t pid : ChildPids()) {
      if (childrenBefore.count(pid) == 0 && IsFusermount(pid)) helperPid_ = pid;
    }
  }

  // Closing the socket tells the helper this process is done; it finds the mount gone and
  // exits at once. Waits for it a little, so that no zombie is left.
  void ReleaseHelper() {
    if (helperSocket_ >= 0) close(helperSocket_);
    helperSocket_ = -1;
    if (helperPid_ <= 0) return;
    for (int attempt = 0; attempt < kHelperWaitAttemptMax; attempt++) {
      pid_t done = waitpid(helperPid_, nullptr, WNOHANG);
      if (done == helperPid_ || (done < 0 && errno != EINTR)) break;
      usleep(kHelperWaitStepUs);
    }
    helperPid_ = -1;
  }

  void Loop() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    // A file system of its own (cwd, root, umask) for this thread and the workers it
    // starts: umask 0 there, because the kernel has already applied the application's
    // umask to the modes it sends; the rest of the process keeps its umask.
    if (unshare(CLONE_FS) == 0) umask(0);
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, 1);
    fuse_loop_cfg_set_max_threads(config, settings_.threadCountMax);
    fuse_loop_cfg_set_idle_threads(config, settings_.idleThreadCountMax);
    int result = fuse_loop_mt(fuse_, config);
    fuse_loop_cfg_destroy(config);
    loopResult_.store(result);
    loopEnded_.store(true);
  }

  int Unmount(bool force) {
    // MNT_FORCE on FUSE aborts the connection before unmounting: the workers' reads end
    // with ENODEV and open files answer ENOTCONN.
    if (umount2(dir_.c_str(), force ? MNT_FORCE : 0) == 0) return 0;
    int err = errno;
    if (err == EBUSY && force) {
      if (umount2(dir_.c_str(), MNT_DETACH) == 0) return 0;
      err = errno;
    }
    return err;
  }

  const std::string dir_;
  const Settings settings_;
  const std::shared_ptr<JsInterceptor> interceptor_;
  const std::shared_ptr<Lane> lane_;
  Volume volume_;
  fuse* fuse_ = nullptr;
  int helperSocket_ = -1;
  pid_t helperPid_ = -1;
  std::thread thread_;
  std::mutex stopMutex_;
  std::atomic<State> state_{State::kNew};
  std::atomic<bool> loopEnded_{false};
  std::atomic<int> loopResult_{0};
};

// ---- every live session, for the cleanup at environment teardown and at exit() ----

// The registry owns the sessions: a mount lasts until unmount() or the end of its Node
// environment (or of the process), never until the garbage collector drops its JS object.
std::mutex registryMutex;
// Never destroyed: exit() runs the atexit handler after static destructors may have run.
auto* registry = new std::map<std::shared_ptr<Session>, napi_env>();

void Register(const std::shared_ptr<Session>& session, napi_env env) {
  std::lock_guard<std::mutex> lock(registryMutex);
  registry->emplace(session, env);
}

void Unregister(const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(registryMutex);
  registry->erase(session);
}

// Stops the sessions of `env` (a worker thread's environment ending), or every session
// (nullptr: the process is exiting).
void StopSessions(napi_env env) {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    for (auto entry = registry->begin(); entry != registry->end();) {
      if (env != nullptr && entry->second != env) {
        ++entry;
        continue;
      }
      sessions.push_back(entry->first);
      entry = registry->erase(entry);
    }
  }
  for (const auto& session : sessions) session->Stop(true);
}

void StopAllAtExit() { StopSessions(nullptr); }

// ---- JavaScript ----

unsigned SizeOption(Napi::Env env, Napi::Object options, const char* name, unsigned fallback, unsigned min, unsigned max) {
  Napi::Value value = options.Get(name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsNumber()) throw Napi::TypeError::New(env, std::string("options.") + name + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= min && number <= max) || number != static_cast<double>(static_cast<unsigned>(number))) {
    throw Napi::RangeError::New(env, std::string("options.") + name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return static_cast<unsigned>(number);
}

bool BoolOption(Napi::Env env, Napi::Object options, const char* name, bool fallback) {
  Napi::Value value = options.Get(name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsBoolean()) throw Napi::TypeError::New(env, std::string("options.") + name + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

Settings ParseSettings(Napi::Env env, Napi::Value value) {
  Settings settings;
  settings.allowOther = geteuid() == 0;
  if (value.IsUndefined()) return settings;
  if (!value.IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object options = value.As<Napi::Object>();
  Napi::Value mode = options.Get("mode");
  if (!mode.IsUndefined()) {
    std::string name = mode.IsString() ? mode.As<Napi::String>().Utf8Value() : "";
    if (name == "passthrough") settings.mode = Mode::kPassthrough;
    else if (name == "readonly") settings.mode = Mode::kReadOnly;
    else if (name == "intercept") settings.mode = Mode::kIntercept;
    else throw Napi::TypeError::New(env, "options.mode must be \"passthrough\", \"readonly\" or \"intercept\"");
  }
  settings.allowOther = BoolOption(env, options, "allowOther", settings.allowOther);
  settings.autoUnmount = BoolOption(env, options, "autoUnmount", settings.autoUnmount);
  settings.maxReadSize = SizeOption(env, options, "maxReadSize", 0, kIoSizeMin, kIoSizeMax);
  settings.maxWriteSize = SizeOption(env, options, "maxWriteSize", 0, kIoSizeMin, kIoSizeMax);
  settings.threadCountMax = SizeOption(env, options, "threadCountMax", settings.threadCountMax, 1, kThreadCountMaxLimit);
  unsigned idleFallback = std::min(settings.idleThreadCountMax, settings.threadCountMax);
  settings.idleThreadCountMax = SizeOption(env, options, "idleThreadCountMax", idleFallback, 1, settings.threadCountMax);
  Napi::Value excluded = options.Get("excluded");
  if (!excluded.IsUndefined()) {
    if (!excluded.IsArray()) throw Napi::TypeError::New(env, "options.excluded must be an array of relative paths");
    Napi::Array paths = excluded.As<Napi::Array>();
    for (uint32_t index = 0; index < paths.Length(); index++) {
      Napi::Value path = paths.Get(index);
      std::string text = path.IsString() ? path.As<Napi::String>().Utf8Value() : "";
      if (text.empty() || text[0] == '/' || text.back() == '/') throw Napi::TypeError::New(env, "options.excluded[" + std::to_string(index) + "] must be a relative path (no leading or trailing '/', not empty)");
      settings.excluded.push_back(text);
    }
  }
  return settings;
}

// new FuseLane(handleFd, key, blockSize, extentBytes): the lane of one mirror module
// (fuse-lane.h; drivers/real/lane.ts drives it). Reports are plain objects:
//   { epoch, stopped, why, marks: [[path, [first, count, ...]], ...] (runs of blocks),
//     touched: [[path, [extent, ...]], ...],
//     resubmit: [{ id, op }], completed, errors: [{ path, op, errno }], differed: [path] }
//   (ids: the intercepting mount's).
class FuseLane : public Napi::ObjectWrap<FuseLane> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FuseLane", {
        InstanceMethod<&FuseLane::Listen>("listen"),
        InstanceMethod<&FuseLane::On>("on"),
        InstanceMethod<&FuseLane::Off>("off"),
        InstanceMethod<&FuseLane::Harvest>("harvest"),
        InstanceMethod<&FuseLane::Arm>("arm"),
        InstanceMethod<&FuseLane::Follow>("follow"),
        InstanceMethod<&FuseLane::OnReport>("onReport"),
        InstanceMethod<&FuseLane::Stats>("stats"),
        InstanceMethod<&FuseLane::TakeWritten>("takeWritten"),
        InstanceMethod<&FuseLane::Close>("close"),
    });
  }

  explicit FuseLane(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FuseLane>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber()) {
      throw Napi::TypeError::New(env, "new FuseLane(handleFd, key: Uint8Array, blockSize, extentBytes)");
    }
    Napi::Uint8Array key = info[1].As<Napi::Uint8Array>();
    uint32_t blockSize = info[2].As<Napi::Number>().Uint32Value();
    uint32_t extentBytes = info[3].As<Napi::Number>().Uint32Value();
    if (key.ByteLength() < 16) throw Napi::RangeError::New(env, "FuseLane: the key must have 16 bytes at least");
    if (blockSize == 0 || extentBytes == 0 || extentBytes % blockSize != 0) throw Napi::RangeError::New(env, "FuseLane: extentBytes must be a positive multiple of blockSize");
    lane_ = std::make_shared<Lane>(info[0].As<Napi::Number>().Int32Value(), std::string(reinterpret_cast<const char*>(key.Data()), key.ByteLength()), blockSize, extentBytes);
  }

  ~FuseLane() override {
    if (lane_ != nullptr) lane_->SetReporter(nullptr);
  }

  std::shared_ptr<Lane> lane() const { return lane_; }

 private:
  // [[path, [first, count, ...]], ...]: a report's marks, as runs of blocks.
  static Napi::Array PathsWithRuns(Napi::Env env, const std::map<std::string, BlockRuns>& entries) {
    Napi::Array out = Napi::Array::New(env, entries.size());
    uint32_t index = 0;
    for (const auto& entry : entries) {
      Napi::Array numbers = Napi::Array::New(env, entry.second.size() * 2);
      uint32_t at = 0;
      for (const auto& run : entry.second) {
        numbers.Set(at++, Napi::Number::New(env, static_cast<double>(run.first)));
        numbers.Set(at++, Napi::Number::New(env, static_cast<double>(run.second - run.first)));
      }
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, entry.first));
      pair.Set(1u, numbers);
      out.Set(index++, pair);
    }
    return out;
  }

  // [[path, [n, ...]], ...]: a report's touched paths (extents).
  static Napi::Array PathsWithNumbers(Napi::Env env, const std::map<std::string, std::set<uint64_t>>& entries) {
    Napi::Array out = Napi::Array::New(env, entries.size());
    uint32_t index = 0;
    for (const auto& entry : entries) {
      Napi::Array numbers = Napi::Array::New(env, entry.second.size());
      uint32_t at = 0;
      for (uint64_t number : entry.second) numbers.Set(at++, Napi::Number::New(env, static_cast<double>(number)));
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, entry.first));
      pair.Set(1u, numbers);
      out.Set(index++, pair);
    }
    return out;
  }

  static Napi::Object ToJs(Napi::Env env, const LaneReport& report) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("epoch", report.epoch < 0 ? env.Null() : Napi::Number::New(env, static_cast<double>(report.epoch)).As<Napi::Value>());
    out.Set("stopped", Napi::Boolean::New(env, report.stopped));
    out.Set("why", Napi::String::New(env, report.why));
    out.Set("marks", PathsWithRuns(env, report.marks));
    out.Set("touched", PathsWithNumbers(env, report.touched));
    Napi::Array resubmit = Napi::Array::New(env, report.resubmit.size());
    uint32_t index = 0;
    for (const auto& entry : report.resubmit) {
      Napi::Object item = Napi::Object::New(env);
      Napi::Object op = Napi::Object::New(env);
      JsInterceptor::Describe(env, entry.second, op);
      item.Set("id", Napi::Number::New(env, static_cast<double>(entry.first)));
      item.Set("op", op);
      resubmit.Set(index++, item);
    }
    out.Set("resubmit", resubmit);
    out.Set("completed", Napi::Number::New(env, static_cast<double>(report.completed)));
    Napi::Array errors = Napi::Array::New(env, report.errors.size());
    index = 0;
    for (const auto& entry : report.errors) {
      Napi::Object item = Napi::Object::New(env);
      item.Set("path", Napi::String::New(env, entry.path));
      item.Set("op", Napi::String::New(env, entry.op));
      item.Set("errno", Napi::Number::New(env, entry.error));
      errors.Set(index++, item);
    }
    out.Set("errors", errors);
    Napi::Array differed = Napi::Array::New(env, report.differed.size());
    index = 0;
    for (const auto& path : report.differed) differed.Set(index++, Napi::String::New(env, path));
    out.Set("differed", differed);
    return out;
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "listen(host, port)");
    std::string error = lane_->Listen(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value());
    if (!error.empty()) throw CodedError(env, "LANE_LISTEN_FAILED", error);
    return env.Undefined();
  }

  // on(session, epoch, host, port), or on(null, epoch): the lane of a primary alone.
  Napi::Value On(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() >= 2 && info[0].IsNull() && info[1].IsNumber()) {
      lane_->OnAlone(static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()));
      return env.Undefined();
    }
    if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsString() || !info[3].IsNumber()) throw Napi::TypeError::New(env, "on(session, epoch, host, port) or on(null, epoch)");
    lane_->On(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()), static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()), info[2].As<Napi::String>().Utf8Value(), info[3].As<Napi::Number>().Int32Value());
    return env.Undefined();
  }

  Napi::Value Off(const Napi::CallbackInfo& info) { return ToJs(info.Env(), lane_->Off()); }
  Napi::Value Harvest(const Napi::CallbackInfo& info) { return ToJs(info.Env(), lane_->Harvest()); }

  Napi::Value Arm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) throw Napi::TypeError::New(env, "arm(path, extents)");
    Napi::Array list = info[1].As<Napi::Array>();
    std::vector<uint64_t> extents;
    for (uint32_t i = 0; i < list.Length(); i++) extents.push_back(static_cast<uint64_t>(list.Get(i).As<Napi::Number>().DoubleValue()));
    lane_->Arm(info[0].As<Napi::String>().Utf8Value(), extents);
    return env.Undefined();
  }

  // follow(session, epoch) or follow(null)
  Napi::Value Follow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || info[0].IsNull()) {
      lane_->Follow(false, 0, 0);
      return env.Undefined();
    }
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "follow(session, epoch) or follow(null)");
    lane_->Follow(true, static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()), static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()));
    return env.Undefined();
  }

  // onReport(fn): a lane that stops on its own calls fn(report), on this thread.
  Napi::Value OnReport(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "onReport(fn)");
    auto reference = std::make_shared<Napi::FunctionReference>(Napi::Persistent(info[0].As<Napi::Function>()));
    lane_->SetReporter([reference](LaneReport report) {
      Napi::Env env = reference->Env();
      Napi::HandleScope scope(env);
      reference->Call({ToJs(env, report)});
    });
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("completed", Napi::Number::New(env, static_cast<double>(lane_->Completed())));
    stats.Set("applied", Napi::Number::New(env, static_cast<double>(lane_->Applied())));
    stats.Set("durableWrites", Napi::Number::New(env, static_cast<double>(lane_->DurableWrites())));
    stats.Set("sparedFsyncs", Napi::Number::New(env, static_cast<double>(lane_->SparedFsyncs())));
    return stats;
  }

  // takeWritten(): the paths the lane wrote since the last call, or null when it lost count.
  Napi::Value TakeWritten(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool all = false;
    std::vector<std::string> paths = lane_->TakeWritten(&all);
    if (all) return env.Null();
    Napi::Array out = Napi::Array::New(env, paths.size());
    for (size_t index = 0; index < paths.size(); index++) out.Set(static_cast<uint32_t>(index), Napi::String::New(env, paths[index]));
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    lane_->SetReporter(nullptr);
    lane_->Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<Lane> lane_;
};

class FuseMount : public Napi::ObjectWrap<FuseMount> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FuseMount", {
        InstanceMethod<&FuseMount::Stats>("stats"),
        InstanceMethod<&FuseMount::Unmount>("unmount"),
        InstanceMethod<&FuseMount::Answer>("answer"),
        InstanceMethod<&FuseMount::Exclude>("exclude"),
        InstanceAccessor<&FuseMount::Dir>("dir"),
        InstanceAccessor<&FuseMount::HandleFd>("handleFd"),
    });
  }

  explicit FuseMount(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FuseMount>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    std::string dir = info[0].As<Napi::String>().Utf8Value();
    Settings settings = ParseSettings(env, info.Length() > 1 ? info[1] : env.Undefined());
    std::shared_ptr<JsInterceptor> interceptor;
    if (settings.mode == Mode::kIntercept) {
      Napi::Value intercept = info[1].As<Napi::Object>().Get("intercept");
      if (!intercept.IsFunction()) throw Napi::TypeError::New(env, "options.intercept must be a function (id, op) in intercept mode");
      interceptor = std::make_shared<JsInterceptor>(env, intercept.As<Napi::Function>());
    }
    char resolved[PATH_MAX];
    if (realpath(dir.c_str(), resolved) == nullptr) {
      int err = errno;
      if (interceptor != nullptr) interceptor->Close();
      throw ErrnoError(env, "realpath " + dir, err);
    }
    std::shared_ptr<Lane> lane;
    if (interceptor != nullptr) {
      Napi::Value given = info[1].As<Napi::Object>().Get("lane");
      if (!given.IsUndefined() && !given.IsNull()) {
        Napi::FunctionReference* laneClass = env.GetInstanceData<Napi::FunctionReference>();
        if (!given.IsObject() || laneClass == nullptr || !given.As<Napi::Object>().InstanceOf(laneClass->Value())) {
          interceptor->Close();
          throw Napi::TypeError::New(env, "options.lane must be a FuseLane");
        }
        lane = Napi::ObjectWrap<FuseLane>::Unwrap(given.As<Napi::Object>())->lane();
      }
    }
    session_ = std::make_shared<Session>(resolved, settings, std::move(interceptor), std::move(lane));
    int err = 0;
    std::string message;
    if (!session_->Start(&err, &message)) {
      session_.reset();
      if (err != 0) throw ErrnoError(env, message, err);
      throw CodedError(env, "FUSE_MOUNT_FAILED", message);
    }
    Register(session_, env);
  }

 private:
  Napi::Value Dir(const Napi::CallbackInfo& info) {
    return session_ == nullptr ? info.Env().Null() : Napi::String::New(info.Env(), session_->dir()).As<Napi::Value>();
  }

  Napi::Value HandleFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), session_->volume().dirFd); }

  // answer(id, errno): 0 or a positive errno; false when nothing waits under that id.
  Napi::Value Answer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "answer(id, errno) takes two numbers");
    double id = info[0].As<Napi::Number>().DoubleValue();
    int err = info[1].As<Napi::Number>().Int32Value();
    if (err < 0 || err > 4095) throw Napi::RangeError::New(env, "answer: errno must be 0 or a positive errno");
    JsInterceptor* interceptor = session_->interceptor();
    if (interceptor == nullptr) throw CodedError(env, "FUSE_NOT_INTERCEPTING", "answer: this mount does not intercept");
    return Napi::Boolean::New(env, interceptor->Answer(static_cast<uint64_t>(id), err));
  }

  // exclude(path): `path` (relative) is left out of replication; its changes are applied
  // here from now on (fuse-passthrough.h, Volume::excludedPaths).
  Napi::Value Exclude(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "exclude(path) takes a relative path");
    if (session_->interceptor() == nullptr) throw CodedError(env, "FUSE_NOT_INTERCEPTING", "exclude: this mount does not intercept");
    LearnExcluded(session_->volume(), info[0].As<Napi::String>().Utf8Value());
    return env.Undefined();
  }

  // stats(): { mounted, operations: { getattr, ... }, errors, bytesRead, bytesWritten,
  //            loopResult, lastMessage } (counts since the mount).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    Napi::Object operations = Napi::Object::New(env);
    const Volume& volume = session_->volume();
    for (int kind = 0; kind < kOpCount; kind++) {
      operations.Set(kOpNames[kind], Napi::Number::New(env, static_cast<double>(volume.operations[kind].Load())));
    }
    stats.Set("mounted", Napi::Boolean::New(env, session_->mounted() && !session_->loopEnded()));
    stats.Set("operations", operations);
    stats.Set("errors", Napi::Number::New(env, static_cast<double>(volume.errors.Load())));
    stats.Set("intercepted", Napi::Number::New(env, static_cast<double>(volume.intercepted.Load())));
    stats.Set("laneOps", Napi::Number::New(env, static_cast<double>(volume.laneOps.Load())));
    stats.Set("excludedOps", Napi::Number::New(env, static_cast<double>(volume.excludedOps.Load())));
    JsInterceptor* interceptor = session_->interceptor();
    stats.Set("waiting", Napi::Number::New(env, interceptor == nullptr ? 0 : static_cast<double>(interceptor->WaitingCount())));
    stats.Set("bytesRead", Napi::Number::New(env, static_cast<double>(volume.bytesRead.Load())));
    stats.Set("bytesWritten", Napi::Number::New(env, static_cast<double>(volume.bytesWritten.Load())));
    stats.Set("loopResult", Napi::Number::New(env, session_->loopResult()));
    std::string message = PeekLog();
    stats.Set("lastMessage", message.empty() ? env.Null() : Napi::String::New(env, message).As<Napi::Value>());
    return stats;
  }

  // unmount({ force? }): see the top of this file.
  Napi::Value Unmount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool force = false;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
      force = BoolOption(env, info[0].As<Napi::Object>(), "force", false);
    }
    int err = session_->Stop(force);
    if (err == EBUSY) {
      throw CodedError(env, "EBUSY", "umount " + session_->dir() + ": files are open under the mount (EBUSY); close them, or unmount({ force: true }) to cut them off with ENOTCONN");
    }
    if (err != 0) throw ErrnoError(env, "umount " + session_->dir(), err);
    Unregister(session_);
    return env.Undefined();
  }

  std::shared_ptr<Session> session_;
};

// setTimes(path, atime, mtime): utimensat(2) without following a symlink, to the
// nanosecond (Node's own utimes takes seconds as a double). A time is {s, ns}, or null to
// leave it as it is. Returns 0 or an errno.
Napi::Value SetTimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString()) {
    Napi::TypeError::New(env, "setTimes(path, atime, mtime)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  struct timespec times[2];
  for (int i = 0; i < 2; i++) {
    Napi::Value value = info[1 + i];
    if (value.IsNull()) {
      times[i].tv_sec = 0;
      times[i].tv_nsec = UTIME_OMIT;
      continue;
    }
    if (!value.IsObject()) {
      Napi::TypeError::New(env, "setTimes: a time is {s, ns} or null").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object time = value.As<Napi::Object>();
    times[i].tv_sec = static_cast<time_t>(time.Get("s").ToNumber().Int64Value());
    times[i].tv_nsec = static_cast<long>(time.Get("ns").ToNumber().Int64Value());
  }
  int rc = utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
  return Napi::Number::New(env, rc);
}

// Whether the directory holding `path` has a default POSIX ACL: a new entry then inherits
// it, masked by the mode it is made with, and no umask applies (as on a local disk).
bool ParentHasDefaultAcl(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : path.substr(0, slash);
  return lgetxattr(parent.c_str(), "system.posix_acl_default", nullptr, 0) > 0;
}

// createFile(path, mode, uid, gid): a new regular file (O_EXCL, never through a symlink)
// with that owner (uid -1: the caller's) and exactly that mode whatever the umask (set
// after fchown, which clears set-user/group-ID bits), in one call: the disk port's create
// was four trips through libuv's thread pool. Under a directory with a default ACL the
// permission bits are the ones the inherited ACL gave (this process's umask does not apply
// there): only set-ID bits are given back. Returns 0 or an errno (the file stays when
// only its owner or mode failed, as with the calls one by one).
Napi::Value CreateFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "createFile(path, mode, uid, gid)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  int64_t uid = info[2].As<Napi::Number>().Int64Value(), gid = info[3].As<Napi::Number>().Int64Value();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return Napi::Number::New(env, errno);
  int rc = 0;
  if (uid >= 0 && fchown(fd, static_cast<uid_t>(uid), static_cast<gid_t>(gid)) < 0) rc = errno;
  if (rc == 0 && ParentHasDefaultAcl(path)) {
    struct stat status {};
    if (fstat(fd, &status) < 0) rc = errno;
    else if ((mode & 07000) != 0 && fchmod(fd, (status.st_mode & 0777) | (mode & 07000)) < 0) rc = errno;
  } else if (rc == 0 && fchmod(fd, mode) < 0) {
    rc = errno;
  }
  close(fd);
  return Napi::Number::New(env, rc);
}

// xattrs(path): the extended attributes of `path` (never through a symlink it ends in), as
// [name, Uint8Array] pairs in the order the file system lists them; an errno on failure.
// Read again from the start when one changes between the list and the values (ERANGE).
Napi::Value Xattrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "xattrs(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  for (int attempt = 0;; attempt++) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) return Napi::Number::New(env, errno);
    std::vector<char> names(static_cast<size_t>(size) + 1, '\0');
    size = llistxattr(path.c_str(), names.data(), names.size() - 1);
    if (size < 0 && errno == ERANGE && attempt < 8) continue;
    if (size < 0) return Napi::Number::New(env, errno);
    Napi::Array out = Napi::Array::New(env);
    bool retry = false;
    for (size_t at = 0; at < static_cast<size_t>(size) && !retry;) {
      const char* name = names.data() + at;
      at += std::strlen(name) + 1;
      ssize_t length = lgetxattr(path.c_str(), name, nullptr, 0);
      if (length < 0 && errno == ENODATA) continue;  // removed since the list
      if (length < 0) return Napi::Number::New(env, errno);
      Napi::ArrayBuffer bytes = Napi::ArrayBuffer::New(env, static_cast<size_t>(length));
      ssize_t got = length == 0 ? 0 : lgetxattr(path.c_str(), name, bytes.Data(), static_cast<size_t>(length));
      if (got < 0 && (errno == ERANGE || errno == ENODATA) && attempt < 8) {
        retry = true;
        break;
      }
      if (got < 0) return Napi::Number::New(env, errno);
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, name));
      pair.Set(1u, Napi::Uint8Array::New(env, static_cast<size_t>(got), bytes, 0));
      out.Set(out.Length(), pair);
    }
    if (!retry) return out;
  }
}

// setXattr(path, name, value, flags): lsetxattr(2) (flags: 0, XATTR_CREATE 1, XATTR_REPLACE 2).
// Returns 0 or an errno.
Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsTypedArray() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "setXattr(path, name, value, flags)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  Napi::Uint8Array value = info[2].As<Napi::Uint8Array>();
  int rc = lsetxattr(path.c_str(), name.c_str(), value.Data(), value.ByteLength(), info[3].As<Napi::Number>().Int32Value());
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

// removeXattr(path, name): lremovexattr(2). Returns 0 or an errno.
Napi::Value RemoveXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "removeXattr(path, name)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  return Napi::Number::New(env, lremovexattr(path.c_str(), name.c_str()) == 0 ? 0 : errno);
}

// syncFs(path): syncfs(2) of the file system holding the directory `path`, on a thread of
// libuv's pool (it writes back everything dirty there). Resolves to 0 or an errno (since
// Linux 5.8 syncfs reports writeback errors).
class SyncFsWorker : public Napi::AsyncWorker {
 public:
  SyncFsWorker(Napi::Env env, std::string path) : Napi::AsyncWorker(env), path_(std::move(path)), deferred_(Napi::Promise::Deferred::New(env)) {}
  void Execute() override {
    int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      error_ = errno;
      return;
    }
    if (syncfs(fd) < 0) error_ = errno;
    close(fd);
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), error_)); }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 private:
  const std::string path_;
  Napi::Promise::Deferred deferred_;
  int error_ = 0;
};

Napi::Value SyncFs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "syncFs(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new SyncFsWorker(env, info[0].As<Napi::String>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, [] {
    fuse_set_log_func(KeepLog);
    std::atexit(StopAllAtExit);
  });
  napi_env raw = env;
  env.AddCleanupHook([raw] { StopSessions(raw); });
  exports.Set("FuseMount", FuseMount::Define(env));
  Napi::Function laneClass = FuseLane::Define(env);
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(laneClass)));
  exports.Set("FuseLane", laneClass);
  Napi::Array operations = Napi::Array::New(env, kOpCount);
  for (int kind = 0; kind < kOpCount; kind++) operations.Set(static_cast<uint32_t>(kind), Napi::String::New(env, kOpNames[kind]));
  exports.Set("operationKinds", operations);
  Napi::Array modifying = Napi::Array::New(env);
  for (int kind = 0, count = 0; kind < kOpCount; kind++) {
    if (OpModifies(static_cast<OpKind>(kind))) modifying.Set(static_cast<uint32_t>(count++), Napi::String::New(env, kOpNames[kind]));
  }
  exports.Set("modifyingKinds", modifying);
  exports.Set("libfuseVersion", Napi::Number::New(env, fuse_version()));
  exports.Set("setTimes", Napi::Function::New(env, SetTimes, "setTimes"));
  exports.Set("createFile", Napi::Function::New(env, CreateFile, "createFile"));
  exports.Set("syncFs", Napi::Function::New(env, SyncFs, "syncFs"));
  exports.Set("xattrs", Napi::Function::New(env, Xattrs, "xattrs"));
  exports.Set("setXattr", Napi::Function::New(env, SetXattr, "setXattr"));
  exports.Set("removeXattr", Napi::Function::New(env, RemoveXattr, "removeXattr"));
  return exports;
}

}  // namespace
}  // namespace fusefs
}  // namespace tandem

static Napi::Object InitFuseAddon(Napi::Env env, Napi::Object exports) { return tandem::fusefs::Init(env, exports); }

NODE_API_MODULE(tandem_fuse, InitFuseAddon)
