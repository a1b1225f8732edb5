// Interface addresses through rtnetlink (RTM_NEWADDR / RTM_DELADDR on a NETLINK_ROUTE
// socket, with libmnl), the kernel API that `ip address` itself uses. One socket per
// call: addresses change rarely (a VIP going up or down).

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <unistd.h>

#include <ctime>
#include <vector>

#include "common.h"

namespace tandem {
namespace {

struct ParsedAddress {
  int family;
  uint8_t bytes[16];
  size_t size;
};

ParsedAddress ParseAddress(Napi::Env env, const std::string& text) {
  ParsedAddress parsed{};
  if (inet_pton(AF_INET, text.c_str(), parsed.bytes) == 1) {
    parsed.family = AF_INET;
    parsed.size = 4;
  } else if (inet_pton(AF_INET6, text.c_str(), parsed.bytes) == 1) {
    parsed.family = AF_INET6;
    parsed.size = 16;
  } else {
    throw Napi::TypeError::New(env, "address '" + text + "' is neither IPv4 nor IPv6");
  }
  return parsed;
}

// Sends one address request and waits for the kernel's acknowledgement; throws the
// kernel's errno (EEXIST, EADDRNOTAVAIL, EPERM, ...) as a JS exception.
void AddressRequest(const Napi::CallbackInfo& info, uint16_t type, uint16_t flags) {
  Napi::Env env = info.Env();
  std::string interface = StringArg(info, 0, "interface");
  ParsedAddress address = ParseAddress(env, StringArg(info, 1, "address"));
  uint32_t prefixLength = UintArg(info, 2, "prefixLength");
  if (prefixLength > address.size * 8) throw Napi::RangeError::New(env, "prefixLength is longer than the address");
  unsigned index = InterfaceIndex(env, interface);

  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = type;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  header->nlmsg_seq = static_cast<uint32_t>(time(nullptr));
  auto* message = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(header, sizeof(ifaddrmsg)));
  message->ifa_family = static_cast<uint8_t>(address.family);
  message->ifa_prefixlen = static_cast<uint8_t>(prefixLength);
  message->ifa_scope = RT_SCOPE_UNIVERSE;
  message->ifa_index = index;
  mnl_attr_put(header, IFA_LOCAL, address.size, address.bytes);
  mnl_attr_put(header, IFA_ADDRESS, address.size, address.bytes);

  mnl_socket* socket = mnl_socket_open(NETLINK_ROUTE);
  if (socket == nullptr) throw ErrnoError(env, "mnl_socket_open", errno);
  int err = 0;
  if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    err = errno;
  } else if (mnl_socket_sendto(socket, header, header->nlmsg_len) < 0) {
    err = errno;
  } else {
    uint32_t portid = mnl_socket_get_portid(socket);
    int rc = MNL_CB_OK;
    do {
      ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
      if (received < 0) {
        err = errno;
        break;
      }
      rc = mnl_cb_run(buffer.data(), received, header->nlmsg_seq, portid, nullptr, nullptr);
      if (rc < 0) err = errno;
    } while (rc > MNL_CB_STOP);
  }
  mnl_socket_close(socket);
  if (err != 0) {
    throw ErrnoError(env, std::string(type == RTM_NEWADDR ? "RTM_NEWADDR " : "RTM_DELADDR ") + interface, err);
  }
}

// addressAdd(interface, address, prefixLength): fails with code EEXIST when present.
Napi::Value AddressAdd(const Napi::CallbackInfo& info) {
  AddressRequest(info, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  return info.Env().Undefined();
}

// addressDelete(interface, address, prefixLength): fails with code EADDRNOTAVAIL when absent.
Napi::Value AddressDelete(const Napi::CallbackInfo& info) {
  AddressRequest(info, RTM_DELADDR, 0);
  return info.Env().Undefined();
}

}  // namespace

Napi::Object InitRtnl(Napi::Env env, Napi::Object exports) {
  exports.Set("addressAdd", Napi::Function::New<AddressAdd>(env, "addressAdd"));
  exports.Set("addressDelete", Napi::Function::New<AddressDelete>(env, "addressDelete"));
  return exports;
}

}  // namespace tandem
