// The lane of the replicator: see fuse-lane.h and docs/replicator.md ("The lane").
//
// Wire (TCP, one connection per lane epoch, the primary connects):
//   secondary → primary  "TLN3" Ns[32]
//   primary → secondary  Np[32] session[8] epoch[8] HMAC(key, "hello" Ns Np session epoch)
//   secondary → primary  HMAC(key, "ok" Np Ns)        (only when it follows that epoch)
// then frames, each: type[1] flags[1] pathLength[2] dataLength[4] lseq[8] offset[8]
// result[8] path data mac[16], where mac is the AES-128-GCM tag of an empty message with
// header, path and data as associated data (GMAC: 14 GB/s here against HMAC-SHA256's 1.6,
// the difference a 1 MiB write feels), key = the first 16 bytes of sessionKey =
// HMAC(key, "key" Ns Np), IV = direction[4] counter[8]: the counter counts the frames of
// that direction (a frame replayed, dropped or reordered fails its mac; no IV repeats under
// a key, which is new for every connection). Integers are little-endian. Types: 1 write,
// 2 fsync (primary → secondary), 3 ack (result: errno). Flags: 1 datasync (an fsync's, or
// how a durable write is synced), 2 durable (a write: synced before it is acknowledged).
// A write of more than 256 KiB goes as several write frames of consecutive extents under
// one lseq, each acknowledged.

#include "fuse-lane.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tandem {
namespace fusefs {

// The frames' MAC of one direction of one connection (see the wire above).
class FrameMac {
 public:
  FrameMac(const std::string& sessionKey, uint8_t direction) : context_(EVP_CIPHER_CTX_new()), direction_(direction) {
    EVP_EncryptInit_ex(context_, EVP_aes_128_gcm(), nullptr, reinterpret_cast<const unsigned char*>(sessionKey.data()), nullptr);
  }
  ~FrameMac() { EVP_CIPHER_CTX_free(context_); }
  FrameMac(const FrameMac&) = delete;
  FrameMac& operator=(const FrameMac&) = delete;
  void Tag(uint64_t counter, std::initializer_list<std::pair<const void*, size_t>> parts, uint8_t out[16]) {
    unsigned char iv[12] = {direction_, 0, 0, 0};
    for (int i = 0; i < 8; i++) iv[4 + i] = static_cast<unsigned char>(counter >> (8 * i));
    int length = 0;
    EVP_EncryptInit_ex(context_, nullptr, nullptr, nullptr, iv);
    for (const auto& part : parts) {
      if (part.second > 0) EVP_EncryptUpdate(context_, nullptr, &length, static_cast<const unsigned char*>(part.first), static_cast<int>(part.second));
    }
    unsigned char none[16];
    EVP_EncryptFinal_ex(context_, none, &length);
    EVP_CIPHER_CTX_ctrl(context_, EVP_CTRL_GCM_GET_TAG, 16, out);
  }

 private:
  EVP_CIPHER_CTX* const context_;
  const uint8_t direction_;
};

namespace {

constexpr size_t kNonce = 32;
constexpr size_t kMac = 16;
constexpr size_t kHeader = 32;
constexpr size_t kPathMax = 4096;
constexpr size_t kDataMax = 16u << 20;
constexpr uint8_t kFrameWrite = 1, kFrameFsync = 2, kFrameAck = 3;
constexpr uint8_t kFlagDatasync = 1, kFlagDurable = 2;
// A path fsynced after at most this many writes is committed to (Lane::Habit): its next
// writes, up to this many before its next fsync, go durable. A file written in bulk and
// fsynced at the end (a checkpoint's) pays at most this many syncs of its own per fsync.
constexpr uint64_t kCommitWrites = 4;
// Paths whose habits a lane keeps before it forgets them all (they are only a speed-up).
constexpr size_t kHabitsMax = 4096;
constexpr int kConnectTimeoutMs = 2000;
// A secondary's acknowledgements wait to go together while the next frame is already here
// (one send for a burst), at most this many.
constexpr size_t kAckBatch = 64;
constexpr size_t kReadBuffer = 256u << 10;
// A larger write goes as frames of this many bytes (one sequence number, an ack each): the
// peer applies the first while the rest arrive, where it waited for the whole MiB before
// checking its mac and writing it.
constexpr size_t kPieceBytes = 256u << 10;
// A write of more than this many bytes is sent by the connection's sender thread while its
// worker writes it here (Lane::Sender); a smaller one by its worker, when nothing is queued
// before it, where waking another thread would cost more than it spares.
constexpr size_t kInlineBytes = 64u << 10;
// A report names at most this many errors of operations completed alone.
constexpr size_t kReportErrorsMax = 16;
// An armed "extent" meaning the whole path (the JavaScript side's 2^53 - 1).
constexpr uint64_t kWholePath = (uint64_t{1} << 53) - 1;
// Paths a lane remembers writing before it counts them all (Lane::TakeWritten).
constexpr size_t kWrittenMax = 100000;

using Bytes = std::vector<uint8_t>;

// HMAC-SHA256 of the parts (the handshake's proofs and the connection's key).
Bytes Hmac(const std::string& key, const std::vector<std::pair<const void*, size_t>>& parts) {
  HMAC_CTX* context = HMAC_CTX_new();
  HMAC_Init_ex(context, key.data(), static_cast<int>(key.size()), EVP_sha256(), nullptr);
  for (const auto& part : parts) HMAC_Update(context, static_cast<const unsigned char*>(part.first), part.second);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  HMAC_Final(context, out, &length);
  HMAC_CTX_free(context);
  return Bytes(out, out + length);
}

bool WriteAll(int fd, const void* data, size_t length) {
  const uint8_t* at = static_cast<const uint8_t*>(data);
  while (length > 0) {
    ssize_t count = send(fd, at, length, MSG_NOSIGNAL);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) return false;
    at += count;
    length -= static_cast<size_t>(count);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t length) {
  uint8_t* at = static_cast<uint8_t*>(data);
  while (length > 0) {
    ssize_t count = recv(fd, at, length, 0);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) return false;
    at += count;
    length -= static_cast<size_t>(count);
  }
  return true;
}

// Sends every byte of the parts (a frame without copying its data into one buffer).
bool WriteAllV(int fd, iovec* parts, int count) {
  while (count > 0) {
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = static_cast<size_t>(count);
    ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    size_t left = static_cast<size_t>(sent);
    while (count > 0 && left >= parts->iov_len) {
      left -= parts->iov_len;
      parts++;
      count--;
    }
    if (count > 0) {
      parts->iov_base = static_cast<uint8_t*>(parts->iov_base) + left;
      parts->iov_len -= left;
    }
  }
  return true;
}

// Reads a connection through a buffer: a burst of small frames costs one recv; a large
// body goes straight to where it is wanted.
class Reader {
 public:
  explicit Reader(int fd) : fd_(fd), buffer_(kReadBuffer) {}
  bool Read(void* out, size_t length) {
    uint8_t* at = static_cast<uint8_t*>(out);
    size_t take = std::min(length, end_ - begin_);
    if (take > 0) std::memcpy(at, &buffer_[begin_], take);
    begin_ += take;
    at += take;
    length -= take;
    if (length == 0) return true;
    begin_ = end_ = 0;
    if (length >= buffer_.size() / 2) return ReadAll(fd_, at, length);
    while (end_ < length) {
      ssize_t count = recv(fd_, &buffer_[end_], buffer_.size() - end_, 0);
      if (count < 0 && errno == EINTR) continue;
      if (count <= 0) return false;
      end_ += static_cast<size_t>(count);
    }
    std::memcpy(at, &buffer_[0], length);
    begin_ = length;
    return true;
  }
  // Whether a whole frame is here already (reading it will not wait).
  bool HoldsFrame() const;

 private:
  const int fd_;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0, end_ = 0;
};

void Put(uint8_t* at, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; i++) at[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t Get(const uint8_t* at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; i++) value |= static_cast<uint64_t>(at[i]) << (8 * i);
  return value;
}

// A handshake that does not finish within kConnectTimeoutMs fails (0: no timeout, for frames).
void ReceiveTimeout(int fd, int ms) {
  timeval timeout{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

// A TCP connection to host:port within kConnectTimeoutMs, or -1.
int ConnectTo(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  int fd = -1;
  for (addrinfo* each = found; each != nullptr && fd < 0; each = each->ai_next) {
    fd = socket(each->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int rc = connect(fd, each->ai_addr, each->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd waiting{fd, POLLOUT, 0};
      int error = 0;
      socklen_t size = sizeof(error);
      rc = poll(&waiting, 1, kConnectTimeoutMs) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0 ? 0 : -1;
    }
    if (rc < 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd >= 0) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    NoDelay(fd);
  }
  return fd;
}

bool Reader::HoldsFrame() const {
  size_t held = end_ - begin_;
  if (held < kHeader) return false;
  return held >= kHeader + Get(&buffer_[begin_ + 2], 2) + Get(&buffer_[begin_ + 4], 4) + kMac;
}

// A frame's header and mac (its path and data stay where they are until sent).
struct FrameHead {
  uint8_t header[kHeader];
  uint8_t mac[kMac];
};

void MakeFrame(FrameMac& mac, uint64_t counter, uint8_t type, uint8_t flags, uint64_t lseq, uint64_t offset, uint64_t result, const std::string& path, const char* data, size_t length, FrameHead* out) {
  uint8_t* header = out->header;
  header[0] = type;
  header[1] = flags;
  Put(&header[2], path.size(), 2);
  Put(&header[4], length, 4);
  Put(&header[8], lseq, 8);
  Put(&header[16], offset, 8);
  Put(&header[24], result, 8);
  mac.Tag(counter, {{header, kHeader}, {path.data(), path.size()}, {data, length}}, out->mac);
}

bool SendFrame(int fd, FrameHead& head, const std::string& path, const char* data, size_t length) {
  iovec parts[4] = {{head.header, kHeader}, {const_cast<char*>(path.data()), path.size()}, {const_cast<char*>(data), length}, {head.mac, kMac}};
  return WriteAllV(fd, parts, 4);
}

struct Received {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint64_t lseq = 0, offset = 0, result = 0;
  std::string path;
  Bytes body;  // path then data (reused from frame to frame)
  size_t pathLength = 0;
  const uint8_t* Data() const { return body.data() + pathLength; }
  size_t DataLength() const { return body.size() - pathLength; }
};

// Reads and authenticates one frame; false on a closed connection or a bad frame.
bool ReadFrame(Reader& reader, FrameMac& mac, uint64_t counter, Received* out) {
  uint8_t header[kHeader];
  if (!reader.Read(header, kHeader)) return false;
  size_t pathLength = Get(&header[2], 2), dataLength = Get(&header[4], 4);
  if (pathLength > kPathMax || dataLength > kDataMax) return false;
  out->body.resize(pathLength + dataLength);
  out->pathLength = pathLength;
  uint8_t tag[kMac], expected[kMac];
  if (!reader.Read(out->body.data(), out->body.size()) || !reader.Read(tag, kMac)) return false;
  mac.Tag(counter, {{header, kHeader}, {out->body.data(), out->body.size()}}, expected);
  if (CRYPTO_memcmp(expected, tag, kMac) != 0) return false;
  out->type = header[0];
  out->flags = header[1];
  out->lseq = Get(&header[8], 8);
  out->offset = Get(&header[16], 8);
  out->result = Get(&header[24], 8);
  out->path.assign(reinterpret_cast<const char*>(out->body.data()), pathLength);
  return true;
}

// A path the primary names, checked before use: relative, no "." or ".." component.
bool SafePath(const std::string& path) {
  if (path.empty() || path[0] == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

// One admitted operation, on the stack of the worker that waits for it.
struct Lane::Flight {
  const Intercepted* op = nullptr;
  uint64_t lseq = 0;
  bool hasLocal = false, hasPeer = false;
  int local = 0, peer = 0;  // 0 or a positive errno (the first a piece had)
  size_t pieces = 1, acked = 0;  // frames sent for it, and acknowledged
  bool sending = false;  // queued to the sender or being sent by it (Sender::mutex)
  bool durable = false;  // a write synced on both before it completes
  bool datasync = true;  // an fsync's kind, or how a durable write is synced
  // An fsync's view of its path's habit when admitted: which habit, its writes, and how
  // many came since the path's previous fsync.
  uint64_t habitBirth = 0, habitWrites = 0, writesBefore = 0;
  enum class State { kFlying, kDone, kResubmitted, kFailed } state = State::kFlying;
  uint64_t resubmitId = 0;
  Interceptor* resubmittedTo = nullptr;  // the mount's interceptor it was enlisted with
  std::condition_variable changed;
};

// A connection's sending side. Frames go in the lane's sequence, each under the next
// counter of the MAC: a worker sends its own small frame when nothing is queued and nobody
// sends; otherwise the flight is queued to the sender thread, which sends it while the
// worker writes it here (on a machine with a core to spare, the MAC and the copy into the
// socket no longer add to the write's own time). A queued flight's operation stays valid
// until `sending` is false again: its worker waits for that before it returns.
struct Lane::Sender {
  Sender(const std::string& sessionKey, int fd) : mac(sessionKey, 0), fd(fd) {}
  FrameMac mac;
  uint64_t counter = 0;
  const int fd;
  std::mutex mutex;
  std::condition_variable wake;  // the sender thread: something queued, or stop
  std::condition_variable sent;  // workers: a queued flight was sent (or dropped)
  std::deque<Flight*> queue;
  bool busy = false;  // a thread sends (the sender, or a worker its own frame)
  bool stop = false;
};

Lane::Lane(int dirFd, std::string key, uint32_t blockSize, uint32_t extentBytes)
    : dirFd_(fcntl(dirFd, F_DUPFD_CLOEXEC, 3)), key_(std::move(key)), blockSize_(blockSize), extentBytes_(extentBytes) {}

Lane::~Lane() {
  Close();
  if (dirFd_ >= 0) close(dirFd_);
}

void Lane::Close() {
  Off();
  Follow(false, 0, 0);
  int listenFd = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    listenFd = listenFd_;
    listenFd_ = -1;
  }
  if (listenFd >= 0) shutdown(listenFd, SHUT_RDWR);
  if (listener_.joinable()) listener_.join();
  if (listenFd >= 0) close(listenFd);
}

// ---- the secondary ----

std::string Lane::Listen(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return std::string("lane: cannot resolve ") + host + ": " + gai_strerror(rc);
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) < 0 || listen(fd, 4) < 0) {
    std::string message = std::string("lane: cannot listen on ") + host + ":" + std::to_string(port) + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    freeaddrinfo(found);
    return message;
  }
  freeaddrinfo(found);
  listenFd_ = fd;
  listener_ = std::thread([this, fd] {
    pthread_setname_np(pthread_self(), "lane-follow");
    Serve(fd);
  });
  return "";
}

void Lane::Serve(int listenFd) {
  for (;;) {
    int fd = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    NoDelay(fd);
    // Whoever connects and says nothing does not hold the only follower for long.
    ReceiveTimeout(fd, kConnectTimeoutMs);
    FollowConnection(fd);
    close(fd);
  }
}

void Lane::FollowConnection(int fd) {
  uint8_t nonce[kNonce];
  if (getrandom(nonce, kNonce, 0) != static_cast<ssize_t>(kNonce)) return;
  uint8_t greeting[4 + kNonce];
  std::memcpy(greeting, "TLN3", 4);
  std::memcpy(greeting + 4, nonce, kNonce);
  uint8_t hello[kNonce + 16 + 32];
  if (!WriteAll(fd, greeting, sizeof(greeting)) || !ReadAll(fd, hello, sizeof(hello))) return;
  const uint8_t* peerNonce = hello;
  uint64_t session = Get(hello + kNonce, 8), epoch = Get(hello + kNonce + 8, 8);
  Bytes expected = Hmac(key_, {{"hello", 5}, {nonce, kNonce}, {peerNonce, kNonce}, {hello + kNonce, 16}});
  if (CRYPTO_memcmp(expected.data(), hello + kNonce + 16, 32) != 0) return;
  {
    std::lock_guard<std::mutex> lock(followMutex_);
    if (!following_ || followSession_ != session || followEpoch_ != epoch) return;
    followFd_ = fd;
  }
  Bytes ok = Hmac(key_, {{"ok", 2}, {peerNonce, kNonce}, {nonce, kNonce}});
  if (WriteAll(fd, ok.data(), ok.size())) ApplyFrames(fd, session, epoch, nonce, peerNonce);
  // The caller closes fd: Follow() must never shut down a descriptor number reused since.
  std::lock_guard<std::mutex> lock(followMutex_);
  if (followFd_ == fd) followFd_ = -1;
}

void Lane::ApplyFrames(int fd, uint64_t session, uint64_t epoch, const uint8_t* nonce, const uint8_t* peerNonce) {
  ReceiveTimeout(fd, 0);
  std::string sessionKey;
  {
    Bytes derived = Hmac(key_, {{"key", 3}, {nonce, kNonce}, {peerNonce, kNonce}});
    sessionKey.assign(derived.begin(), derived.end());
  }
  uint64_t received = 0, sent = 0;
  Reader reader(fd);
  FrameMac inbound(sessionKey, 0), outbound(sessionKey, 1);
  Received frame;
  // Acknowledgements of frames applied while the next one was already here: sent together.
  std::vector<FrameHead> acks;
  auto sendAcks = [&] {
    std::vector<iovec> parts;
    for (FrameHead& ack : acks) {
      parts.push_back({ack.header, kHeader});
      parts.push_back({ack.mac, kMac});
    }
    bool good = parts.empty() || WriteAllV(fd, parts.data(), static_cast<int>(parts.size()));
    acks.clear();
    return good;
  };
  for (;;) {
    if (!reader.HoldsFrame() && !sendAcks()) break;
    if (!ReadFrame(reader, inbound, received++, &frame) || (frame.type != kFrameWrite && frame.type != kFrameFsync)) break;
    int error = 0;
    {
      std::lock_guard<std::mutex> lock(followMutex_);
      // No longer following this epoch: later frames are the core's (it gave them back).
      if (!following_ || followSession_ != session || followEpoch_ != epoch) break;
      if (!SafePath(frame.path)) {
        error = EINVAL;
      } else if (frame.type == kFrameWrite) {
        NoteWritten(frame.path);
        int file = openat(dirFd_, frame.path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (file < 0) {
          error = errno;
        } else {
          size_t done = 0;
          while (done < frame.DataLength() && error == 0) {
            ssize_t count = pwrite(file, frame.Data() + done, frame.DataLength() - done, static_cast<off_t>(frame.offset + done));
            if (count < 0) error = errno;
            else done += static_cast<size_t>(count);
          }
          if (error == 0 && (frame.flags & kFlagDurable) != 0 && ((frame.flags & kFlagDatasync) != 0 ? fdatasync(file) : fsync(file)) < 0) error = errno;
          close(file);
        }
      } else {
        int file = openat(dirFd_, frame.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (file < 0) error = errno;
        else {
          if (((frame.flags & kFlagDatasync) != 0 ? fdatasync(file) : fsync(file)) < 0) error = errno;
          close(file);
        }
      }
      appliedTotal_++;
    }
    acks.emplace_back();
    MakeFrame(outbound, sent++, kFrameAck, 0, frame.lseq, 0, static_cast<uint64_t>(error), "", nullptr, 0, &acks.back());
    if (acks.size() >= kAckBatch && !sendAcks()) break;
  }
}

void Lane::Follow(bool on, uint64_t session, uint64_t epoch) {
  // Waits for a frame being applied: once this returns, nothing more is applied for the old one.
  std::lock_guard<std::mutex> lock(followMutex_);
  following_ = on;
  followSession_ = session;
  followEpoch_ = epoch;
  if (followFd_ >= 0) shutdown(followFd_, SHUT_RDWR);
}

// ---- the primary ----

void Lane::On(uint64_t session, uint64_t epoch, const std::string& host, int port) {
  std::unique_lock<std::mutex> lock(mutex_);
  // The flights of a stop waiting for syncs are the old lane's to give back (StopLocked).
  syncsDone_.wait(lock, [&] { return !stopPending_; });
  on_ = true;
  ready_ = false;
  alone_ = false;
  session_ = session;
  epoch_ = static_cast<int64_t>(epoch);
  armed_.clear();
  armedSinceReport_.clear();
  habits_.clear();
  uint64_t generation = ++generation_;
  // Detached: it ends with its connection, and keeps the lane alive until then.
  std::thread([self = shared_from_this(), generation, host, port] {
    pthread_setname_np(pthread_self(), "lane-acks");
    self->Connect(generation, host, port);
  }).detach();
}

void Lane::OnAlone(uint64_t epoch) {
  std::unique_lock<std::mutex> lock(mutex_);
  syncsDone_.wait(lock, [&] { return !stopPending_; });
  on_ = true;
  ready_ = true;
  alone_ = true;
  session_ = 0;
  epoch_ = static_cast<int64_t>(epoch);
  armed_.clear();
  armedSinceReport_.clear();
  habits_.clear();
  ++generation_;
}

void Lane::Connect(uint64_t generation, std::string host, int port) {
  int fd = ConnectTo(host, port);
  if (fd >= 0) ReceiveTimeout(fd, kConnectTimeoutMs);
  uint8_t greeting[4 + kNonce];
  if (fd >= 0 && (!ReadAll(fd, greeting, sizeof(greeting)) || std::memcmp(greeting, "TLN3", 4) != 0)) {
    close(fd);
    fd = -1;
  }
  std::string sessionKey;
  if (fd >= 0) {
    uint8_t nonce[kNonce];
    uint8_t hello[kNonce + 16 + 32];
    uint64_t session = 0, epoch = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      session = session_;
      epoch = static_cast<uint64_t>(epoch_);
    }
    bool good = getrandom(nonce, kNonce, 0) == static_cast<ssize_t>(kNonce);
    std::memcpy(hello, nonce, kNonce);
    Put(hello + kNonce, session, 8);
    Put(hello + kNonce + 8, epoch, 8);
    Bytes mac = Hmac(key_, {{"hello", 5}, {greeting + 4, kNonce}, {nonce, kNonce}, {hello + kNonce, 16}});
    std::memcpy(hello + kNonce + 16, mac.data(), 32);
    uint8_t ok[32];
    Bytes expected = Hmac(key_, {{"ok", 2}, {nonce, kNonce}, {greeting + 4, kNonce}});
    good = good && WriteAll(fd, hello, sizeof(hello)) && ReadAll(fd, ok, 32) && CRYPTO_memcmp(ok, expected.data(), 32) == 0;
    Bytes derived = Hmac(key_, {{"key", 3}, {greeting + 4, kNonce}, {nonce, kNonce}});
    sessionKey.assign(derived.begin(), derived.end());
    if (!good) {
      close(fd);
      fd = -1;
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (generation != generation_ || !on_) {
    if (fd >= 0) close(fd);
    return;
  }
  if (fd < 0) {
    StopOnOwnLocked(generation, "the lane could not connect to the peer (" + host + ":" + std::to_string(port) + ")");
    return;
  }
  ReceiveTimeout(fd, 0);
  socket_ = fd;
  auto sender = std::make_shared<Sender>(sessionKey, fd);
  sender_ = sender;
  ready_ = true;
  lock.unlock();
  std::thread sending([this, sender, generation] {
    pthread_setname_np(pthread_self(), "lane-send");
    Send(sender, generation);
  });
  ReadAcks(generation, fd, sessionKey);
  // The lane halted (HaltLocked stopped the sender) before ReadAcks returned; the descriptor
  // is closed only once the sender no longer uses it.
  {
    std::lock_guard<std::mutex> hold(sender->mutex);
    sender->stop = true;
    sender->wake.notify_all();
  }
  sending.join();
  close(fd);
}

void Lane::Send(std::shared_ptr<Sender> sender, uint64_t generation) {
  for (;;) {
    Flight* flight = nullptr;
    {
      std::unique_lock<std::mutex> hold(sender->mutex);
      sender->wake.wait(hold, [&] { return sender->stop || (!sender->queue.empty() && !sender->busy); });
      if (sender->stop) return;
      flight = sender->queue.front();
      sender->queue.pop_front();
      sender->busy = true;
    }
    bool sent = SendFlight(*sender, *flight);
    {
      std::lock_guard<std::mutex> hold(sender->mutex);
      sender->busy = false;
      flight->sending = false;
      sender->sent.notify_all();
    }
    if (!sent) {
      std::lock_guard<std::mutex> lock(mutex_);
      StopOnOwnLocked(generation, "the lane could not send to the peer");
      return;
    }
  }
}

bool Lane::SendFlight(Sender& sender, const Flight& flight) {
  const Intercepted& op = *flight.op;
  bool write = std::strcmp(op.kind, "write") == 0;
  size_t length = write ? op.length : 0;
  uint8_t flags = (flight.datasync ? kFlagDatasync : 0) | (flight.durable ? kFlagDurable : 0);
  for (size_t piece = 0; piece < flight.pieces; piece++) {
    size_t at = piece * kPieceBytes, size = std::min(kPieceBytes, length - at);
    const char* data = write ? op.data + at : nullptr;
    FrameHead head;
    MakeFrame(sender.mac, sender.counter++, write ? kFrameWrite : kFrameFsync, flags, flight.lseq, static_cast<uint64_t>(op.offset) + at, 0, op.path, data, size, &head);
    if (!SendFrame(sender.fd, head, op.path, data, size)) return false;
  }
  return true;
}

void Lane::ReadAcks(uint64_t generation, int fd, const std::string& sessionKey) {
  uint64_t counter = 0;
  Reader reader(fd);
  FrameMac inbound(sessionKey, 1);
  Received frame;
  for (;;) {
    bool good = ReadFrame(reader, inbound, counter++, &frame) && frame.type == kFrameAck;
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation != generation_ || !on_) break;
    if (!good) {
      StopOnOwnLocked(generation, "the lane's connection to the peer ended");
      break;
    }
    auto flight = std::find_if(flights_.begin(), flights_.end(), [&](Flight* each) { return each->lseq == frame.lseq; });
    if (flight == flights_.end()) continue;
    Flight* found = *flight;
    if (found->peer == 0) found->peer = static_cast<int>(frame.result);
    if (++found->acked < found->pieces) continue;
    found->hasPeer = true;
    SettleLocked(found);
  }
}


int Lane::Offer(const Intercepted& op, int fd, bool datasync, bool* taken) {
  bool write = std::strcmp(op.kind, "write") == 0;
  std::unique_lock<std::mutex> lock(mutex_);
  *taken = false;
  if (!on_ || !ready_ || op.path.empty() || interceptor_ == nullptr) return 0;
  // An operation waiting to go to the core stops admissions, or a stream of writes could
  // keep it waiting for ever (the simulator's model counts it with the core at once).
  bool admitted = withCore_ == 0 && coreWaiting_ == 0;
  if (write && admitted) {
    auto armed = armed_.find(op.path);
    admitted = op.length > 0 && armed != armed_.end();
    if (admitted && armed->second.count(kWholePath) == 0) {
      uint64_t first = static_cast<uint64_t>(op.offset) / extentBytes_, last = (static_cast<uint64_t>(op.offset) + op.length - 1) / extentBytes_;
      for (uint64_t extent = first; extent <= last && admitted; extent++) admitted = armed->second.count(extent) > 0;
    }
  }
  if (alone_) {
    if (!admitted) return 0;
    *taken = true;
    return OfferAlone(op, fd, datasync, lock);
  }
  // Every write counts towards the path's habit, the core's too.
  Habit& habit = HabitOf(op.path);
  bool durable = false;
  if (write) {
    habit.writes++;
    habit.writesSinceFsync++;
    durable = admitted && habit.committed && habit.writesSinceFsync <= kCommitWrites && op.length <= kPieceBytes;
    if (!durable) habit.clean = false;
  }
  if (!admitted) return 0;
  *taken = true;
  // Never a file with another name: written through that name too, under a habit of its own.
  auto oneName = [fd] {
    struct stat stats;
    return fstat(fd, &stats) == 0 && stats.st_nlink <= 1;
  };
  if (!write && habit.clean && habit.cleanEpoch == coreEpoch_ && (datasync || !habit.datasync) && oneName()) {
    // Every write completed on this path is durable on both already: nothing to wait for.
    habit.writesSinceFsync = 0;
    pending_.completed++;
    completedTotal_++;
    sparedTotal_++;
    return 0;
  }
  Flight flight;
  flight.op = &op;
  flight.lseq = nextLseq_++;
  flight.datasync = write ? habit.datasync : datasync;
  flight.durable = durable;
  if (!write) {
    flight.habitBirth = habit.birth;
    flight.habitWrites = habit.writes;
    flight.writesBefore = habit.writesSinceFsync;
    habit.writesSinceFsync = 0;
  }
  flights_.push_back(&flight);
  uint64_t generation = generation_;
  // Sent (or queued to be sent), then applied here while the peer applies it, both in the
  // order of the lane's sequence: the sender's queue, and the lock held while applied here
  // (an fsync admitted after a write finds it written here).
  size_t length = write ? op.length : 0;
  flight.pieces = length <= kPieceBytes ? 1 : (length + kPieceBytes - 1) / kPieceBytes;
  std::shared_ptr<Sender> sender = sender_;
  bool sendHere = false;
  {
    std::lock_guard<std::mutex> hold(sender->mutex);
    if (length <= kInlineBytes && sender->queue.empty() && !sender->busy) {
      sendHere = sender->busy = true;
    } else {
      flight.sending = true;
      sender->queue.push_back(&flight);
      sender->wake.notify_one();
    }
  }
  bool sent = true;
  if (sendHere) {
    sent = SendFlight(*sender, flight);
    std::lock_guard<std::mutex> hold(sender->mutex);
    sender->busy = false;
    if (!sender->queue.empty()) sender->wake.notify_one();
  }
  if (write) {
    TouchInto(pending_.touched, op);
    NoteWritten(op.path);
    size_t done = 0;
    while (done < op.length && flight.local == 0) {
      ssize_t count = pwrite(fd, op.data + done, op.length - done, op.offset + static_cast<off_t>(done));
      if (count < 0) flight.local = errno;
      else done += static_cast<size_t>(count);
    }
    // A durable write is complete here once synced too.
    flight.hasLocal = flight.local != 0 || !flight.durable;
    if (flight.local != 0) FailedHereLocked(&flight, generation, false);
  }
  if (!sent) StopOnOwnLocked(generation, "the lane could not send to the peer");
  if (!flight.hasLocal && flight.state == Flight::State::kFlying) {
    // The local fsync outside the lock (while the peer syncs): others go on meanwhile. A
    // stop waits for it (StopLocked).
    syncing_++;
    lock.unlock();
    int error = (flight.datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0;
    lock.lock();
    syncing_--;
    flight.local = error;
    flight.hasLocal = true;
    if (flight.state == Flight::State::kFlying && error != 0) FailedHereLocked(&flight, generation, write);
    else if (flight.state == Flight::State::kFlying) SettleLocked(&flight);
    if (syncing_ == 0) {
      if (stopPending_) {
        stopPending_ = false;
        PostStopLocked(stopPendingWhy_);
      }
      syncsDone_.notify_all();
    }
  }
  flight.changed.wait(lock, [&] { return flight.state != Flight::State::kFlying; });
  lock.unlock();
  {
    // Settled (or halted) while the sender may still read the operation.
    std::unique_lock<std::mutex> hold(sender->mutex);
    sender->sent.wait(hold, [&] { return !flight.sending; });
  }
  if (flight.state == Flight::State::kDone) return flight.local == 0 ? 0 : -flight.local;
  if (flight.state == Flight::State::kFailed) return -EIO;
  // That interceptor outlives this wait: a mount's Stop detaches the lane, then closes it.
  int result = flight.resubmittedTo->WaitFor(flight.resubmitId);
  EndCore();
  return result;
}

int Lane::OfferAlone(const Intercepted& op, int fd, bool datasync, std::unique_lock<std::mutex>& lock) {
  bool write = std::strcmp(op.kind, "write") == 0;
  Flight flight;
  flight.op = &op;
  flight.datasync = datasync;
  flights_.push_back(&flight);
  if (write) {
    TouchInto(pending_.touched, op);
    NoteWritten(op.path);
  }
  lock.unlock();
  int error = 0;
  if (write) {
    size_t done = 0;
    while (done < op.length && error == 0) {
      ssize_t count = pwrite(fd, op.data + done, op.length - done, op.offset + static_cast<off_t>(done));
      if (count < 0) error = errno;
      else done += static_cast<size_t>(count);
    }
  } else {
    error = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0;
  }
  lock.lock();
  auto listed = std::find(flights_.begin(), flights_.end(), &flight);
  // Not listed any more: the mount went meanwhile (Detach failed it, and marked it).
  if (listed == flights_.end()) return -EIO;
  flights_.erase(listed);
  // A write is marked whatever its result: a failed one may have written part.
  if (write) Mark(op);
  if (error != 0) NoteErrorLocked(op, error);
  pending_.completed++;
  completedTotal_++;
  if (flights_.empty()) coreCanGo_.notify_all();
  return error == 0 ? 0 : -error;
}

void Lane::FailedHereLocked(Flight* flight, uint64_t generation, bool syncing) {
  // A write, an fsync, or a durable write's own sync, failed here. It may be a failed
  // writeback (reported by fsync, and by write(2) too, or by the sync of an O_DSYNC
  // write), which dropped every write of the file not yet durable: applied again by the
  // core, on another descriptor, it could succeed with that data gone. Answered with this
  // node's error, as a local disk would, whatever the peer says; the core resends the path
  // (the report names it); the others go back to the core, as for any different result.
  // A write is marked: it may have written all or part here.
  flights_.erase(std::find(flights_.begin(), flights_.end(), flight));
  bool write = std::strcmp(flight->op->kind, "write") == 0;
  if (write) Mark(*flight->op);
  NoteErrorLocked(*flight->op, flight->local);
  pending_.completed++;
  completedTotal_++;
  flight->state = Flight::State::kDone;
  flight->changed.notify_one();
  StopOnOwnLocked(generation, std::string(write ? "write " : "fsync ") + flight->op->path + ": " + std::strerror(flight->local) + (syncing ? " here, syncing it" : " here"));
  if (flights_.empty()) coreCanGo_.notify_all();
}

void Lane::NoteErrorLocked(const Intercepted& op, int error) {
  if (pending_.errors.size() < kReportErrorsMax) pending_.errors.push_back({op.path, std::string(op.kind) + " " + op.path, error});
}

void Lane::SettleLocked(Flight* flight) {
  if (!flight->hasLocal || !flight->hasPeer || flight->state != Flight::State::kFlying) return;
  if (flight->local != flight->peer) {
    pending_.differed.push_back(flight->op->path);
    StopOnOwnLocked(generation_, std::string(flight->op->kind) + " " + flight->op->path + ": " + (flight->local == 0 ? "ok" : std::strerror(flight->local)) + " here, " + (flight->peer == 0 ? "ok" : std::strerror(flight->peer)) + " on the peer");
    return;
  }
  flights_.erase(std::find(flights_.begin(), flights_.end(), flight));
  bool write = std::strcmp(flight->op->kind, "write") == 0;
  if (write) Mark(*flight->op);
  auto habit = habits_.find(flight->op->path);
  if (write && flight->durable) {
    durableTotal_++;
    // Synced with less than an fsync that completed meanwhile asked for.
    if (habit != habits_.end() && flight->datasync && !habit->second.datasync) habit->second.clean = false;
  }
  if (!write && habit != habits_.end() && habit->second.birth == flight->habitBirth) {
    // An fsync covers every write admitted before it (applied here and sent before it).
    Habit& found = habit->second;
    found.committed = flight->writesBefore <= kCommitWrites;
    found.datasync = flight->datasync;
    found.clean = found.writes == flight->habitWrites;
    found.cleanEpoch = coreEpoch_;
  }
  pending_.completed++;
  completedTotal_++;
  flight->state = Flight::State::kDone;
  flight->changed.notify_one();
  if (flights_.empty()) coreCanGo_.notify_all();
}

void Lane::Mark(const Intercepted& op) { MarkInto(pending_.marks, op); }

Lane::Habit& Lane::HabitOf(const std::string& path) {
  auto found = habits_.find(path);
  if (found != habits_.end()) return found->second;
  if (habits_.size() >= kHabitsMax) habits_.clear();
  Habit& habit = habits_[path];
  habit.birth = ++habitBirths_;
  return habit;
}

void Lane::NoteWritten(const std::string& path) {
  std::lock_guard<std::mutex> lock(writtenMutex_);
  if (writtenAll_) return;
  written_.insert(path);
  if (written_.size() > kWrittenMax) {
    writtenAll_ = true;
    written_.clear();
  }
}

std::vector<std::string> Lane::TakeWritten(bool* all) {
  std::lock_guard<std::mutex> lock(writtenMutex_);
  *all = writtenAll_;
  std::vector<std::string> paths(written_.begin(), written_.end());
  written_.clear();
  writtenAll_ = false;
  return paths;
}

void AddRun(BlockRuns& runs, uint64_t first, uint64_t end) {
  if (first >= end) return;
  // The first run that ends at or past `first` (it overlaps or touches the new one) …
  auto at = runs.upper_bound(first);
  if (at != runs.begin() && std::prev(at)->second >= first) --at;
  // … and every run after it that starts at or before `end` merge into one.
  while (at != runs.end() && at->first <= end) {
    first = std::min(first, at->first);
    end = std::max(end, at->second);
    at = runs.erase(at);
  }
  runs.emplace(first, end);
}

void Lane::MarkInto(std::map<std::string, BlockRuns>& marks, const Intercepted& op) const {
  if (op.length == 0) return;
  uint64_t first = static_cast<uint64_t>(op.offset) / blockSize_, last = (static_cast<uint64_t>(op.offset) + op.length - 1) / blockSize_;
  AddRun(marks[op.path], first, last + 1);
}

void Lane::TouchInto(std::map<std::string, std::set<uint64_t>>& touched, const Intercepted& op) const {
  std::set<uint64_t>& extents = touched[op.path];
  if (op.length == 0) return;
  uint64_t first = static_cast<uint64_t>(op.offset) / extentBytes_, last = (static_cast<uint64_t>(op.offset) + op.length - 1) / extentBytes_;
  for (uint64_t extent = first; extent <= last; extent++) extents.insert(extent);
}

LaneReport Lane::TakeLocked(bool stopped, const std::string& why) {
  LaneReport report = std::move(pending_);
  pending_ = LaneReport();
  report.epoch = epoch_;
  report.stopped = stopped;
  report.why = why;
  for (Flight* flight : flights_) {
    if (std::strcmp(flight->op->kind, "write") == 0) TouchInto(report.touched, *flight->op);
  }
  return report;
}

// No flight goes back to the core while its sync here is under way: one that failed here
// (a failed writeback) is answered with that error (FailedHereLocked), where the core,
// applying it again on another descriptor, would report a success with the data gone (the
// fuzzer found it after a hold stopped the lane). So a stop first admits nothing (a stop
// of another thread meanwhile is this one), then waits for those syncs: Off() on the
// JavaScript thread, StopOnOwnLocked by leaving the stop to the last of them.
LaneReport Lane::StopLocked(const std::string& why) {
  on_ = false;
  ready_ = false;
  generation_++;
  if (syncing_ > 0) {
    // Only Off() comes here with syncs under way; it holds mutex_ in a unique_lock, which
    // this waits through (the JavaScript thread, so no On() meanwhile).
    std::unique_lock<std::mutex> held(mutex_, std::adopt_lock);
    syncsDone_.wait(held, [&] { return syncing_ == 0; });
    held.release();
  }
  LaneReport report = TakeLocked(true, why);
  HaltLocked(report);
  return report;
}

void Lane::HaltLocked(LaneReport& report) {
  on_ = false;
  ready_ = false;
  generation_++;
  armed_.clear();
  armedSinceReport_.clear();
  habits_.clear();
  if (socket_ >= 0) shutdown(socket_, SHUT_RDWR);
  socket_ = -1;
  if (sender_ != nullptr) {
    // What was queued is not sent; a flight being sent ends with the connection.
    std::lock_guard<std::mutex> hold(sender_->mutex);
    sender_->stop = true;
    for (Flight* flight : sender_->queue) flight->sending = false;
    sender_->queue.clear();
    sender_->wake.notify_all();
    sender_->sent.notify_all();
  }
  sender_ = nullptr;
  for (Flight* flight : flights_) {
    uint64_t id = interceptor_ == nullptr ? 0 : interceptor_->Enlist(*flight->op);
    if (id == 0) {
      // No core to give it to (the mount is going): it fails, and stays marked.
      flight->state = Flight::State::kFailed;
      if (std::strcmp(flight->op->kind, "write") == 0) {
        MarkInto(report.marks, *flight->op);
        TouchInto(report.touched, *flight->op);
      }
    } else {
      flight->state = Flight::State::kResubmitted;
      flight->resubmitId = id;
      flight->resubmittedTo = interceptor_;
      withCore_++;
      report.resubmit.emplace_back(id, *flight->op);
    }
    flight->changed.notify_one();
  }
  flights_.clear();
  coreCanGo_.notify_all();
}

void Lane::StopOnOwnLocked(uint64_t generation, const std::string& why) {
  if (generation != generation_ || !on_) return;
  if (syncing_ > 0) {
    // Finished by the last sync under way (Offer), never waited for here: this may be the
    // thread that reads the acknowledgements or sends the frames.
    on_ = false;
    ready_ = false;
    generation_++;
    stopPending_ = true;
    stopPendingWhy_ = why;
    return;
  }
  PostStopLocked(why);
}

void Lane::PostStopLocked(const std::string& why) {
  LaneReport report = StopLocked(why);
  std::function<void(LaneReport)> reporter = reporter_;
  auto shared = std::make_shared<LaneReport>(std::move(report));
  // After every operation handed to the core before, ahead of any after (one queue).
  if (interceptor_ == nullptr || !reporter || !interceptor_->Post([reporter, shared] { reporter(std::move(*shared)); })) {
    // Nobody to tell: the mount is going, and Detach fails what waits.
  }
}

LaneReport Lane::Off() {
  std::unique_lock<std::mutex> lock(mutex_);
  // A stop of its own waiting for syncs: its report goes first.
  syncsDone_.wait(lock, [&] { return !stopPending_; });
  if (!on_) return TakeLocked(true, "already stopped");
  if (alone_) {
    // Nothing is given back alone: one applied again by the core while its own write was
    // still going could land after a later write of another thread. What is under way (a
    // write or an fsync here) is waited for, admitting nothing more meanwhile.
    ready_ = false;
    coreCanGo_.wait(lock, [&] { return flights_.empty(); });
    if (!on_) return TakeLocked(true, "already stopped");
  }
  return StopLocked("asked");
}

LaneReport Lane::Harvest() {
  std::lock_guard<std::mutex> lock(mutex_);
  LaneReport report = TakeLocked(false, "");
  // What it wrote, or was armed, since its last report stays armed (the core keeps those
  // extents hot at the clear this harvest leads to); the rest is disarmed. A file written
  // steadily keeps its lane across checkpoints, where disarming everything sent every write
  // of the flush's time through the core.
  for (auto armed = armed_.begin(); armed != armed_.end();) {
    auto wrote = report.touched.find(armed->first);
    auto told = armedSinceReport_.find(armed->first);
    std::set<uint64_t> kept;
    if (told != armedSinceReport_.end()) kept = told->second;
    if (wrote != report.touched.end()) {
      bool whole = armed->second.count(kWholePath) > 0;
      for (uint64_t extent : wrote->second) {
        if (whole || armed->second.count(extent) > 0) kept.insert(extent);
      }
    }
    if (kept.empty()) {
      armed = armed_.erase(armed);
    } else {
      armed->second = std::move(kept);
      ++armed;
    }
  }
  armedSinceReport_.clear();
  return report;
}

void Lane::Arm(const std::string& path, const std::vector<uint64_t>& extents) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!on_) return;
  armed_[path].insert(extents.begin(), extents.end());
  armedSinceReport_[path].insert(extents.begin(), extents.end());
}

void Lane::SetReporter(std::function<void(LaneReport)> reporter) {
  std::lock_guard<std::mutex> lock(mutex_);
  reporter_ = std::move(reporter);
}

uint64_t Lane::Completed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completedTotal_;
}

uint64_t Lane::DurableWrites() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return durableTotal_;
}

uint64_t Lane::SparedFsyncs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sparedTotal_;
}

uint64_t Lane::Applied() const {
  std::lock_guard<std::mutex> lock(followMutex_);
  return appliedTotal_;
}

void Lane::Attach(Interceptor* interceptor) {
  std::lock_guard<std::mutex> lock(mutex_);
  interceptor_ = interceptor;
}

void Lane::Detach() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Nothing to give operations back to: they fail, marked in what the core's off() takes.
  interceptor_ = nullptr;
  if (on_) HaltLocked(pending_);
  withCore_ = 0;
  coreCanGo_.notify_all();
}

void Lane::BeginCore() {
  std::unique_lock<std::mutex> lock(mutex_);
  coreWaiting_++;
  coreCanGo_.wait(lock, [&] { return flights_.empty(); });
  coreWaiting_--;
  withCore_++;
  coreEpoch_++;
}

void Lane::EndCore() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (withCore_ > 0) withCore_--;
}

}  // namespace fusefs
}  // namespace tandem
