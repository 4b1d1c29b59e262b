// nitride_native module initialisation: each part registers its own exports.
#include "nitride.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  nitride::InitTap(env, exports);
  nitride::InitPeerCred(env, exports);
  nitride::InitSdNotify(env, exports);
  nitride::InitMemfd(env, exports);
  nitride::InitProcess(env, exports);
  nitride::InitListen(env, exports);
  nitride::InitXts(env, exports);
  nitride::InitGcm(env, exports);
  nitride::InitBlockIo(env, exports);
  nitride::InitVpc(env, exports);
  nitride::InitNbdLane(env, exports);
  nitride::InitRbd(env, exports);
  nitride::InitIoLimiter(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(nitride_native, Init)
