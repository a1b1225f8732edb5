// ARP through an AF_PACKET socket: frames whose Ethernet source and ARP sender hardware
// address are chosen separately. A farm's virtual MAC (SafeKit's vmac_invisible) goes in
// the ARP payload, so clients send to it, while the frame source stays the node's own
// MAC, so switches never learn the virtual MAC and keep flooding it to every node.
//
// sendArp(options) sends one frame (a gratuitous announcement when the VIP comes up).
// ArpResponder answers ARP requests for the VIPs on one interface from a thread of its
// own until closed; it dies with the process, so a crashed service answers for nothing.

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace tandem {
namespace {

constexpr size_t kEthHeaderSize = 14;
constexpr size_t kArpSize = 28;
// Ethernet's minimum frame without its checksum; shorter frames are padded with zeros.
constexpr size_t kFrameSizeMin = 60;

struct ArpFields {
  uint8_t frameDestination[6];
  uint8_t frameSource[6];
  uint16_t operation;  // ARPOP_REQUEST or ARPOP_REPLY
  uint8_t senderMac[6];
  uint8_t senderIp[4];
  uint8_t targetMac[6];
  uint8_t targetIp[4];
};

size_t BuildFrame(const ArpFields& fields, uint8_t frame[kFrameSizeMin]) {
  std::memset(frame, 0, kFrameSizeMin);
  std::memcpy(frame, fields.frameDestination, 6);
  std::memcpy(frame + 6, fields.frameSource, 6);
  frame[12] = ETH_P_ARP >> 8;
  frame[13] = ETH_P_ARP & 0xff;
  uint8_t* arp = frame + kEthHeaderSize;
  arp[0] = 0;
  arp[1] = ARPHRD_ETHER;
  arp[2] = ETH_P_IP >> 8;
  arp[3] = ETH_P_IP & 0xff;
  arp[4] = 6;
  arp[5] = 4;
  arp[6] = static_cast<uint8_t>(fields.operation >> 8);
  arp[7] = static_cast<uint8_t>(fields.operation & 0xff);
  std::memcpy(arp + 8, fields.senderMac, 6);
  std::memcpy(arp + 14, fields.senderIp, 4);
  std::memcpy(arp + 18, fields.targetMac, 6);
  std::memcpy(arp + 24, fields.targetIp, 4);
  return kFrameSizeMin;
}

int OpenPacketSocket() { return socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP)); }

sockaddr_ll LinkAddress(unsigned index, const uint8_t destination[6]) {
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ARP);
  address.sll_ifindex = static_cast<int>(index);
  address.sll_halen = 6;
  if (destination != nullptr) std::memcpy(address.sll_addr, destination, 6);
  return address;
}

std::string FieldString(Napi::Env env, Napi::Object options, const char* name) {
  Napi::Value value = options.Get(name);
  if (!value.IsString()) throw Napi::TypeError::New(env, std::string("sendArp: ") + name + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

// sendArp({ interface, operation: "request"|"reply", frameSource, frameDestination,
//           senderMac, senderIp, targetMac, targetIp }): one frame, as given.
Napi::Value SendArp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "sendArp: options must be an object");
  Napi::Object options = info[0].As<Napi::Object>();
  std::string interface = FieldString(env, options, "interface");
  std::string operation = FieldString(env, options, "operation");
  if (operation != "request" && operation != "reply") throw Napi::TypeError::New(env, "sendArp: operation must be request or reply");
  ArpFields fields{};
  fields.operation = operation == "request" ? ARPOP_REQUEST : ARPOP_REPLY;
  ParseMac(env, FieldString(env, options, "frameSource"), "frameSource", fields.frameSource);
  ParseMac(env, FieldString(env, options, "frameDestination"), "frameDestination", fields.frameDestination);
  ParseMac(env, FieldString(env, options, "senderMac"), "senderMac", fields.senderMac);
  ParseMac(env, FieldString(env, options, "targetMac"), "targetMac", fields.targetMac);
  ParseIpv4(env, FieldString(env, options, "senderIp"), "senderIp", fields.senderIp);
  ParseIpv4(env, FieldString(env, options, "targetIp"), "targetIp", fields.targetIp);
  unsigned index = InterfaceIndex(env, interface);

  uint8_t frame[kFrameSizeMin];
  size_t size = BuildFrame(fields, frame);
  int fd = OpenPacketSocket();
  if (fd < 0) throw ErrnoError(env, "socket AF_PACKET", errno);
  sockaddr_ll address = LinkAddress(index, fields.frameDestination);
  ssize_t sent = sendto(fd, frame, size, 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  int err = errno;
  close(fd);
  if (sent < 0) throw ErrnoError(env, "sendto " + interface, err);
  return env.Undefined();
}

// interfaceMac(interface): the interface's own hardware address, "aa:bb:cc:dd:ee:ff".
Napi::Value InterfaceMac(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string interface = StringArg(info, 0, "interface");
  InterfaceIndex(env, interface);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  ifreq request{};
  std::strncpy(request.ifr_name, interface.c_str(), IF_NAMESIZE - 1);
  int rc = ioctl(fd, SIOCGIFHWADDR, &request);
  int err = errno;
  close(fd);
  if (rc < 0) throw ErrnoError(env, "SIOCGIFHWADDR " + interface, err);
  const auto* mac = reinterpret_cast<const uint8_t*>(request.ifr_hwaddr.sa_data);
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return Napi::String::New(env, text);
}

class ArpResponder : public Napi::ObjectWrap<ArpResponder> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ArpResponder", {
        InstanceMethod<&ArpResponder::Stats>("stats"),
        InstanceMethod<&ArpResponder::Close>("close"),
    });
  }

  // new ArpResponder(interface, vips: string[], senderMac): answers requests for any of
  // `vips` with `senderMac` in the payload and the interface's own MAC as frame source.
  explicit ArpResponder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ArpResponder>(info) {
    Napi::Env env = info.Env();
    interface_ = StringArg(info, 0, "interface");
    if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "vips must be an array of IPv4 addresses");
    Napi::Array vips = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < vips.Length(); i++) {
      Napi::Value vip = vips.Get(i);
      if (!vip.IsString()) throw Napi::TypeError::New(env, "vips must be an array of IPv4 addresses");
      uint8_t bytes[4];
      ParseIpv4(env, vip.As<Napi::String>().Utf8Value(), "vip", bytes);
      uint32_t address;
      std::memcpy(&address, bytes, 4);
      vips_.push_back(address);
    }
    ParseMac(env, StringArg(info, 2, "senderMac"), "senderMac", senderMac_);
    index_ = InterfaceIndex(env, interface_);
    ReadOwnMac(env);
    Open(env);
    thread_ = std::thread([this] { Loop(); });
  }

  ~ArpResponder() override { Stop(); }

 private:
  void ReadOwnMac(Napi::Env env) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw ErrnoError(env, "socket", errno);
    ifreq request{};
    std::strncpy(request.ifr_name, interface_.c_str(), IF_NAMESIZE - 1);
    int rc = ioctl(fd, SIOCGIFHWADDR, &request);
    int err = errno;
    close(fd);
    if (rc < 0) throw ErrnoError(env, "SIOCGIFHWADDR " + interface_, err);
    std::memcpy(ownMac_, request.ifr_hwaddr.sa_data, 6);
  }

  void Open(Napi::Env env) {
    fd_ = OpenPacketSocket();
    if (fd_ < 0) throw ErrnoError(env, "socket AF_PACKET", errno);
    sockaddr_ll address = LinkAddress(index_, nullptr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      int err = errno;
      close(fd_);
      fd_ = -1;
      throw ErrnoError(env, "bind AF_PACKET " + interface_, err);
    }
    stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stopFd_ < 0) {
      int err = errno;
      close(fd_);
      fd_ = -1;
      throw ErrnoError(env, "eventfd", err);
    }
  }

  void Loop() {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    uint8_t buffer[2048];
    for (;;) {
      int ready = poll(fds, 2, -1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) {
        Fail("poll", errno);
        return;
      }
      if (fds[1].revents != 0) return;
      if ((fds[0].revents & POLLIN) == 0) continue;
      sockaddr_ll from{};
      socklen_t fromSize = sizeof(from);
      ssize_t size = recvfrom(fd_, buffer, sizeof(buffer), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromSize);
      if (size < 0) {
        if (errno != EAGAIN && errno != EINTR) Fail("recvfrom", errno);
        continue;
      }
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      Handle(buffer, static_cast<size_t>(size));
    }
  }

  void Handle(const uint8_t* frame, size_t size) {
    if (size < kEthHeaderSize + kArpSize) return;
    const uint8_t* arp = frame + kEthHeaderSize;
    bool ethernetIpv4 = arp[0] == 0 && arp[1] == ARPHRD_ETHER && arp[2] == (ETH_P_IP >> 8) && arp[3] == (ETH_P_IP & 0xff) && arp[4] == 6 && arp[5] == 4;
    if (!ethernetIpv4 || arp[6] != 0 || arp[7] != ARPOP_REQUEST) return;
    uint32_t senderIp;
    uint32_t targetIp;
    std::memcpy(&senderIp, arp + 14, 4);
    std::memcpy(&targetIp, arp + 24, 4);
    // A gratuitous announcement (sender = target, e.g. a peer raising the same VIP) asks nothing.
    if (senderIp == targetIp) return;
    bool ours = false;
    for (uint32_t vip : vips_) ours = ours || vip == targetIp;
    if (!ours) return;
    requests_++;
    ArpFields reply{};
    std::memcpy(reply.frameDestination, frame + 6, 6);
    std::memcpy(reply.frameSource, ownMac_, 6);
    reply.operation = ARPOP_REPLY;
    std::memcpy(reply.senderMac, senderMac_, 6);
    std::memcpy(reply.senderIp, arp + 24, 4);
    std::memcpy(reply.targetMac, arp + 8, 6);
    std::memcpy(reply.targetIp, arp + 14, 4);
    uint8_t out[kFrameSizeMin];
    size_t outSize = BuildFrame(reply, out);
    sockaddr_ll address = LinkAddress(index_, reply.frameDestination);
    if (sendto(fd_, out, outSize, 0, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
      Fail("sendto", errno);
    } else {
      replies_++;
    }
  }

  void Fail(const char* what, int err) {
    errors_++;
    std::lock_guard<std::mutex> lock(mutex_);
    lastError_ = std::string(what) + " " + interface_ + ": " + std::strerror(err);
  }

  // stats(): { requests, replies, errors, lastError } counted since construction.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("requests", Napi::Number::New(env, static_cast<double>(requests_.load())));
    stats.Set("replies", Napi::Number::New(env, static_cast<double>(replies_.load())));
    stats.Set("errors", Napi::Number::New(env, static_cast<double>(errors_.load())));
    std::lock_guard<std::mutex> lock(mutex_);
    stats.Set("lastError", lastError_.empty() ? env.Null() : Napi::String::New(env, lastError_));
    return stats;
  }

  // Stops answering: the thread ends and the socket closes before close() returns. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  void Stop() {
    if (thread_.joinable()) {
      uint64_t one = 1;
      ssize_t written = write(stopFd_, &one, sizeof(one));
      (void)written;
      thread_.join();
    }
    if (fd_ >= 0) close(fd_);
    if (stopFd_ >= 0) close(stopFd_);
    fd_ = -1;
    stopFd_ = -1;
  }

  std::string interface_;
  unsigned index_ = 0;
  std::vector<uint32_t> vips_;
  uint8_t senderMac_[6] = {};
  uint8_t ownMac_[6] = {};
  int fd_ = -1;
  int stopFd_ = -1;
  std::thread thread_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> replies_{0};
  std::atomic<uint64_t> errors_{0};
  std::mutex mutex_;
  std::string lastError_;
};

}  // namespace

Napi::Object InitArp(Napi::Env env, Napi::Object exports) {
  exports.Set("sendArp", Napi::Function::New<SendArp>(env, "sendArp"));
  exports.Set("interfaceMac", Napi::Function::New<InterfaceMac>(env, "interfaceMac"));
  exports.Set("ArpResponder", ArpResponder::Define(env));
  return exports;
}

}  // namespace tandem
