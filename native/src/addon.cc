// Entry point of tandem's native addon. Every function reports failure as a JS exception
// (errno text and code); nothing here aborts the process.

#include <arpa/inet.h>
#include <net/if.h>

#include <cstdio>

#include "common.h"

namespace tandem {

unsigned InterfaceIndex(Napi::Env env, const std::string& name) {
  if (name.empty() || name.size() >= IF_NAMESIZE) {
    throw Napi::TypeError::New(env, "interface name '" + name + "' is empty or longer than 15 characters");
  }
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) throw ErrnoError(env, "if_nametoindex " + name, errno);
  return index;
}

void ParseMac(Napi::Env env, const std::string& text, const char* what, uint8_t out[6]) {
  unsigned bytes[6];
  char tail;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &bytes[0], &bytes[1], &bytes[2], &bytes[3], &bytes[4], &bytes[5], &tail) != 6) {
    throw Napi::TypeError::New(env, std::string(what) + " '" + text + "' is not a MAC address like 5a:fe:0a:00:00:01");
  }
  for (int i = 0; i < 6; i++) out[i] = static_cast<uint8_t>(bytes[i]);
}

void ParseIpv4(Napi::Env env, const std::string& text, const char* what, uint8_t out[4]) {
  if (inet_pton(AF_INET, text.c_str(), out) != 1) {
    throw Napi::TypeError::New(env, std::string(what) + " '" + text + "' is not an IPv4 address");
  }
}

}  // namespace tandem

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  tandem::InitNft(env, exports);
  tandem::InitRtnl(env, exports);
  tandem::InitArp(env, exports);
  return exports;
}

NODE_API_MODULE(tandem_native, InitAddon)
