// Shared helpers of the addon: errors that carry errno text and a stable code.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tandem {

// A JS Error "<what>: <strerror> (<ENAME>)" with `code` (e.g. "EEXIST"), `errno` and
// `syscall` set, as Node's own system errors have them, so callers can branch on `code`.
inline Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "E" + std::to_string(err);
  Napi::Error error = Napi::Error::New(env, what + ": " + std::strerror(err) + " (" + code + ")");
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, what));
  return error;
}

// Argument checks: a TypeError naming the argument, thrown as a JS exception.
inline std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

inline uint32_t UintArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  return info[index].As<Napi::Number>().Uint32Value();
}

// Interface name to index; throws ENODEV-style errors as JS exceptions.
unsigned InterfaceIndex(Napi::Env env, const std::string& name);

// "aa:bb:cc:dd:ee:ff" to 6 bytes; throws a TypeError naming `what` when malformed.
void ParseMac(Napi::Env env, const std::string& text, const char* what, uint8_t out[6]);

// Dotted IPv4 to 4 bytes in network order; throws a TypeError naming `what`.
void ParseIpv4(Napi::Env env, const std::string& text, const char* what, uint8_t out[4]);

Napi::Object InitNft(Napi::Env env, Napi::Object exports);
Napi::Object InitRtnl(Napi::Env env, Napi::Object exports);
Napi::Object InitArp(Napi::Env env, Napi::Object exports);

}  // namespace tandem
