// NftContext: one libnftables context, and with it one netlink socket, for the life of
// the JS object. A table created through it with `flags owner` belongs to that socket:
// only it may change the table, and the kernel deletes the table when the socket closes,
// which happens when the object is closed, collected, or the process dies.

#include <dirent.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>

#include <cstdlib>

#include "common.h"

namespace tandem {
namespace {

// libnftables opens its netlink socket without SOCK_CLOEXEC (mnl_socket_open), so every
// process the service spawns (module scripts, and the daemons they leave running) would
// inherit it and keep it open after the service died, and with it the `flags owner`
// tables: a crashed service's node would keep its filter (accepting until the lease ran
// out) and the next service would find the tables busy. libnftables does not expose the
// socket, so every netlink socket of the process is marked close-on-exec: none is meant
// for a child. Run on the JS thread, which is also the one that spawns children, so no
// child can be spawned between the socket's creation (in nft_ctx_new; libnftables never
// reopens it since nft_mnl_socket_reopen was removed in 0.9.9, the release that brought
// `flags owner`) and this.
void NetlinkSocketsCloseOnExec() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  const int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    int domain = 0;
    socklen_t length = sizeof domain;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_NETLINK) continue;
    const int flags = fcntl(static_cast<int>(fd), F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0) fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
  }
  closedir(dir);
}

class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NftContext", {
        InstanceMethod<&NftContext::Run>("run"),
        InstanceMethod<&NftContext::Close>("close"),
    });
  }

  explicit NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx_ == nullptr) throw ErrnoError(info.Env(), "nft_ctx_new", errno != 0 ? errno : ENOMEM);
    // Output and errors go to buffers that run() returns or throws, never to stdio.
    if (nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
      nft_ctx_free(ctx_);
      ctx_ = nullptr;
      throw Napi::Error::New(info.Env(), "nft: cannot buffer libnftables output");
    }
    NetlinkSocketsCloseOnExec();
  }

  ~NftContext() override { Free(); }

 private:
  // Runs a batch of nft commands as ONE transaction (libnftables sends every command of
  // the buffer in a single netlink batch: all apply or none). Returns what the commands
  // printed (e.g. a `list`); throws an Error with libnftables' message on failure.
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string commands = StringArg(info, 0, "commands");
    if (ctx_ == nullptr) throw Napi::Error::New(env, "nft: context is closed");
    int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
    std::string output = Text(nft_ctx_get_output_buffer(ctx_));
    std::string errors = Text(nft_ctx_get_error_buffer(ctx_));
    if (rc != 0) {
      Napi::Error error = Napi::Error::New(env, "nft: " + (errors.empty() ? std::string("command failed") : errors));
      error.Set("code", Napi::String::New(env, "NFT_FAILED"));
      error.Set("nftMessage", Napi::String::New(env, errors));
      throw error;
    }
    return Napi::String::New(env, output);
  }

  // Frees the context and closes its socket: owner tables go with it. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }

  void Free() {
    if (ctx_ != nullptr) nft_ctx_free(ctx_);
    ctx_ = nullptr;
  }

  static std::string Text(const char* buffer) { return buffer == nullptr ? std::string() : std::string(buffer); }

  nft_ctx* ctx_ = nullptr;
};

}  // namespace

Napi::Object InitNft(Napi::Env env, Napi::Object exports) {
  exports.Set("NftContext", NftContext::Define(env));
  return exports;
}

}  // namespace tandem
