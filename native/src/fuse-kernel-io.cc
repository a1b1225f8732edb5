// See fuse-kernel-io.h. The kernel's structures come from <linux/fuse.h> (kept out of the
// other files: libfuse's headers do not include it).

#include "fuse-kernel-io.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace tandem {
namespace fusefs {
namespace {

// What the request this thread read last says. libfuse's worker serves a request on the
// thread that read it, before it reads the next: thread-local state is the request's.
thread_local bool t_killSuidgid = false;
thread_local bool t_inInit = false;
thread_local bool t_offersV2 = false;
thread_local bool t_grantV2 = false;
thread_local uint64_t t_initUnique = 0;

template <typename In>
const In* Body(const char* buffer, ssize_t length) {
  if (static_cast<size_t>(length) < sizeof(fuse_in_header) + sizeof(In)) return nullptr;
  return reinterpret_cast<const In*>(buffer + sizeof(fuse_in_header));
}

ssize_t Read(int fd, void* buffer, size_t size, void* userdata) {
  (void)userdata;
  ssize_t length = read(fd, buffer, size);
  t_killSuidgid = false;
  t_inInit = false;
  if (length < static_cast<ssize_t>(sizeof(fuse_in_header))) return length;
  const char* bytes = static_cast<const char*>(buffer);
  fuse_in_header header;
  std::memcpy(&header, bytes, sizeof header);
  switch (header.opcode) {
    case FUSE_INIT:
      // Kernels before protocol 7.36 send only the fields up to `flags`.
      if (static_cast<size_t>(length) >= sizeof(fuse_in_header) + offsetof(fuse_init_in, flags) + sizeof(uint32_t)) {
        uint32_t flags = 0;
        std::memcpy(&flags, bytes + sizeof(fuse_in_header) + offsetof(fuse_init_in, flags), sizeof flags);
        t_inInit = true;
        t_offersV2 = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
        t_initUnique = header.unique;
      }
      break;
    case FUSE_WRITE:
      if (const fuse_write_in* write = Body<fuse_write_in>(bytes, length)) t_killSuidgid = (write->write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
      break;
    case FUSE_SETATTR:
      if (const fuse_setattr_in* setattr = Body<fuse_setattr_in>(bytes, length)) t_killSuidgid = (setattr->valid & FATTR_KILL_SUIDGID) != 0;
      break;
    case FUSE_OPEN:
      if (const fuse_open_in* open = Body<fuse_open_in>(bytes, length)) t_killSuidgid = (open->open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
      break;
    default:
      break;
  }
  return length;
}

ssize_t Writev(int fd, iovec* iov, int count, void* userdata) {
  (void)userdata;
  // libfuse sends a reply as the header, then its argument.
  if (t_grantV2 && count >= 2 && iov[0].iov_len == sizeof(fuse_out_header) && iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    fuse_out_header header;
    std::memcpy(&header, iov[0].iov_base, sizeof header);
    if (header.unique == t_initUnique && header.error == 0) {
      t_grantV2 = false;
      auto* init = static_cast<fuse_init_out*>(iov[1].iov_base);
      init->flags |= FUSE_HANDLE_KILLPRIV_V2;
    }
  }
  return writev(fd, iov, count);
}

}  // namespace

bool InstallKernelIo(fuse_session* session) {
  static const fuse_custom_io io = {Writev, Read, nullptr, nullptr};
  return fuse_session_custom_io(session, &io, fuse_session_fd(session)) == 0;
}

bool KernelOffersKillprivV2() { return t_inInit && t_offersV2; }

void GrantKillprivV2() { t_grantV2 = t_inInit; }

bool KillSuidgidAsked() { return t_killSuidgid; }

}  // namespace fusefs
}  // namespace tandem
