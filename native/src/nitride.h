// Shared declarations for the nitride_native addon.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace nitride {

// Module parts: each registers its exports on `exports`.
void InitTap(Napi::Env env, Napi::Object exports);
void InitPeerCred(Napi::Env env, Napi::Object exports);
void InitSdNotify(Napi::Env env, Napi::Object exports);
void InitXts(Napi::Env env, Napi::Object exports);

// Throws a JS Error "<step>: <strerror(err)>" carrying Node-style system-error
// properties: code = errno name ("EBUSY"), errno = -err (as in Node's own
// errors), syscall = syscall (e.g. "ioctl").
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& step, int err,
                             const char* syscall);

// Argument errors, Node style: TypeError with code ERR_INVALID_ARG_TYPE,
// RangeError with code ERR_OUT_OF_RANGE, Error with code ERR_INVALID_ARG_VALUE.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowInvalidValue(Napi::Env env, const std::string& msg);

// Throws an Error with `code` set.
[[noreturn]] void ThrowWithCode(Napi::Env env, const std::string& msg,
                                const char* code);

// Reads argument `i` as a file descriptor (integer in [0, INT_MAX]).
int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn);

// Reads an optional non-negative integer no larger than `max` from obj[key];
// returns false when the property is absent or undefined.
bool OptionalUint(Napi::Object obj, const char* key, uint64_t max,
                  const char* fn, uint64_t* out);

// Reads an optional boolean from obj[key] (absent/undefined -> false return).
bool OptionalBool(Napi::Object obj, const char* key, const char* fn, bool* out);

}  // namespace nitride
