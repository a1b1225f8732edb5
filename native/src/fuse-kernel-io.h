// The replicator's own reads and writes of /dev/fuse (libfuse's custom I/O): the one place
// that sees the kernel's raw requests and replies, for what libfuse 3.14 does not pass on.
//
// FUSE_HANDLE_KILLPRIV_V2. Without it the kernel asks this file system for every write's
// `security.capability` (a getxattr round trip that doubled the cost of a 4 KiB write once
// extended attributes were served). With it the kernel marks an inode with no set-ID bits
// and no capability after its first write (SB_NOSEC) and asks no more; in return this file
// system clears the set-user-ID and set-group-ID bits itself when the kernel says a write,
// a truncate or an open with O_TRUNC should (the writer lacks CAP_FSETID). libfuse 3.14
// neither offers the flag nor passes on the kill bits: the INIT reply is amended here, and
// each request's kill bit is noted for the handler that serves it, on the same thread.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif

#include <fuse_lowlevel.h>

namespace tandem {
namespace fusefs {

// Reads and writes the session's device through the hooks below. Call after mounting,
// before the loop; with FUSE_CAP_SPLICE_READ off (a spliced request is not seen). false:
// libfuse refused (the session then works as before, without the flag).
bool InstallKernelIo(fuse_session* session);

// In the init handler: whether the kernel offered FUSE_HANDLE_KILLPRIV_V2 with this INIT.
bool KernelOffersKillprivV2();
// In the init handler: the reply to this INIT takes FUSE_HANDLE_KILLPRIV_V2.
void GrantKillprivV2();

// In a write, setattr or open handler: whether the kernel asked for the set-ID bits to go
// (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID). Only ever true on
// a mount that was granted the flag.
bool KillSuidgidAsked();

}  // namespace fusefs
}  // namespace tandem
