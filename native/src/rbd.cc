// Ceph RBD images for the volume layer and the NBD lane (see rbd.h).
//
// JS sees two classes: RbdCluster (one connection per daemon: create, list,
// open, remove images, fence a client) and RbdImage (aio read/write/flush/
// discard/write_zeroes, metadata, advisory locks). Blocking calls (connect,
// open, metadata, locks) run on the libuv threadpool; data calls are librbd
// aio whose completions, on librbd's own threads, settle their promise through
// a thread-safe function. NBD lanes use the same image with RbdAioRead/Write
// and never touch JS for data.
//
// Timeouts: rados_osd_op_timeout and rados_mon_op_timeout are set from
// `timeoutSeconds`, so with the cluster unreachable a request fails with
// -ETIMEDOUT after that long instead of waiting for ever.
#include "rbd.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace nitride {

namespace {

RbdApi g_api;
std::atomic<bool> g_loaded{false};
std::mutex g_load_mu;

// dlopen()s librados and librbd once; empty string on success, else why not.
std::string LoadRbd() {
  std::lock_guard<std::mutex> lock(g_load_mu);
  if (g_loaded.load()) return "";
  // RTLD_NOW: every symbol now, not a crash later. The libraries stay loaded for the process.
  void* rados = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!rados) return std::string("cannot load librados (install Debian's librados2): ") + dlerror();
  void* rbd = dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!rbd) return std::string("cannot load librbd (install Debian's librbd1): ") + dlerror();
  RbdApi api;
#define NITRIDE_RBD_SYM(name)                                                   \
  {                                                                             \
    void* p = dlsym(strncmp(#name, "rados_", 6) == 0 ? rados : rbd, #name);     \
    if (!p) return std::string("librbd/librados lacks " #name);                 \
    api.name = reinterpret_cast<decltype(api.name)>(p);                         \
  }
  NITRIDE_RBD_FUNCTIONS(NITRIDE_RBD_SYM)
#undef NITRIDE_RBD_SYM
  g_api = api;
  g_loaded.store(true);
  return "";
}

const RbdApi& Api() { return g_api; }

Napi::Value ErrnoValue(Napi::Env env, const std::string& step, int err, const char* call) {
  try {
    ThrowErrno(env, step, err, call);
  } catch (const Napi::Error& e) {
    return e.Value();
  }
}

// A blocking librbd/librados call on the threadpool: work() returns 0 or
// -errno; result() builds the resolution value on the JS thread.
class Blocking : public Napi::AsyncWorker {
 public:
  Blocking(Napi::Env env, std::string step, const char* call, std::function<int()> work,
           std::function<Napi::Value(Napi::Env)> result)
      : Napi::AsyncWorker(env, "nitride-rbd"),
        deferred_(Napi::Promise::Deferred::New(env)),
        step_(std::move(step)),
        call_(call),
        work_(std::move(work)),
        result_(std::move(result)) {}

  static Napi::Promise Run(Napi::Env env, std::string step, const char* call, std::function<int()> work,
                           std::function<Napi::Value(Napi::Env)> result = nullptr) {
    auto* job = new Blocking(env, std::move(step), call, std::move(work), std::move(result));
    Napi::Promise p = job->deferred_.Promise();
    job->Queue();
    return p;
  }

  void Execute() override { rc_ = work_(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      deferred_.Reject(ErrnoValue(env, step_, -rc_, call_));
      return;
    }
    try {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string step_;
  const char* call_;
  std::function<int()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  int rc_ = 0;
};

// rbd_close waits for librbd's completion threads to go idle, so an image whose
// last share is dropped on one of them (an aio completion that outlives
// close()) deadlocks that thread, and with it every image of the connection.
// Completions hand their share to this thread instead, which lets go of it.
void DropOffLibrbdThread(std::shared_ptr<RbdImage>&& img) {
  struct Reaper {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<RbdImage>> queue;
  };
  // Never destroyed: at exit, destroying a condition variable its thread
  // still waits on blocks (glibc), and the process would never end.
  static Reaper* const reaper = [] {
    auto* r = new Reaper;
    std::thread([r] {
      std::unique_lock<std::mutex> lock(r->mu);
      for (;;) {
        r->cv.wait(lock, [r] { return !r->queue.empty(); });
        std::shared_ptr<RbdImage> next = std::move(r->queue.front());
        r->queue.pop_front();
        lock.unlock();
        next.reset();
        lock.lock();
      }
    }).detach();
    return r;
  }();
  {
    std::lock_guard<std::mutex> lock(reaper->mu);
    reaper->queue.push_back(std::move(img));
  }
  reaper->cv.notify_one();
}

void CompletionCallback(rbd_completion_t c, void* arg) {
  std::unique_ptr<RbdDone> done(static_cast<RbdDone*>(arg));
  ssize_t ret = Api().rbd_aio_get_return_value(c);
  Api().rbd_aio_release(c);
  (*done)(ret);
}

// Starts one aio request on `img` with a completion that calls `done`. A fenced
// image (see RbdImage::fenced) refuses at once.
int StartAio(RbdImage& img, RbdDone done, const std::function<int(rbd_completion_t)>& start) {
  if (img.fenced.load(std::memory_order_relaxed)) return -ESHUTDOWN;
  RbdImage* self = &img;  // alive until the completion: every caller's `done` holds a share or waits for it
  auto* arg = new RbdDone([self, done = std::move(done)](ssize_t ret) {
    if (ret == -ESHUTDOWN) self->fenced.store(true);
    done(ret);
  });
  rbd_completion_t c;
  int r = Api().rbd_aio_create_completion(arg, CompletionCallback, &c);
  if (r < 0) {
    delete arg;
    return r;
  }
  r = start(c);
  if (r < 0) {
    Api().rbd_aio_release(c);
    delete arg;
  }
  return r;
}

std::string StringArg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsString()) ThrowTypeError(env, std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

uint64_t UintArg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsNumber()) ThrowTypeError(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowRangeError(env, std::string(what) + " must be a non-negative integer");
  }
  return static_cast<uint64_t>(d);
}

void RequireLoaded(Napi::Env env) {
  std::string why = LoadRbd();
  if (!why.empty()) ThrowWithCode(env, why, "ERR_NITRIDE_NO_LIBRBD");
}

Napi::FunctionReference* g_image_ctor = nullptr;
Napi::FunctionReference* g_cluster_ctor = nullptr;

// ---------------------------------------------------------------------------

class RbdImageWrap : public Napi::ObjectWrap<RbdImageWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RbdImage",
                       {
                           InstanceMethod<&RbdImageWrap::Read>("read"),
                           InstanceMethod<&RbdImageWrap::Write>("write"),
                           InstanceMethod<&RbdImageWrap::Flush>("flush"),
                           InstanceMethod<&RbdImageWrap::Discard>("discard"),
                           InstanceMethod<&RbdImageWrap::WriteZeroes>("writeZeroes"),
                           InstanceMethod<&RbdImageWrap::Resize>("resize"),
                           InstanceMethod<&RbdImageWrap::MetadataGet>("metadataGet"),
                           InstanceMethod<&RbdImageWrap::MetadataSet>("metadataSet"),
                           InstanceMethod<&RbdImageWrap::MetadataRemove>("metadataRemove"),
                           InstanceMethod<&RbdImageWrap::Lock>("lock"),
                           InstanceMethod<&RbdImageWrap::Unlock>("unlock"),
                           InstanceMethod<&RbdImageWrap::BreakLock>("breakLock"),
                           InstanceMethod<&RbdImageWrap::Lockers>("lockers"),
                           InstanceMethod<&RbdImageWrap::SnapCreate>("snapCreate"),
                           InstanceMethod<&RbdImageWrap::SnapRemove>("snapRemove"),
                           InstanceMethod<&RbdImageWrap::SnapList>("snapList"),
                           InstanceMethod<&RbdImageWrap::Allocated>("allocated"),
                           InstanceMethod<&RbdImageWrap::Close>("close"),
                           InstanceAccessor<&RbdImageWrap::Size>("size"),
                           InstanceAccessor<&RbdImageWrap::Closed>("closed"),
                       });
  }

  // Only from C++ (RbdCluster.open): new RbdImage(External<shared_ptr<RbdImage>>).
  explicit RbdImageWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RbdImageWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal()) ThrowTypeError(env, "RbdImage: open images with RbdCluster.open()");
    // Taken, not copied: the External lives until a garbage collection, and a share left in it
    // would keep the image open (its watch makes `rbd remove` fail with EBUSY) until then.
    img_ = std::move(*info[0].As<Napi::External<std::shared_ptr<RbdImage>>>().Data());
    // Settles aio promises on the JS thread; ref'd only while requests are in flight (see Settled).
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "nitride-rbd-aio", 0, 1);
    tsfn_.Unref(env);
  }

  ~RbdImageWrap() override { tsfn_.Release(); }

  std::shared_ptr<RbdImage> image() const { return img_; }

 private:
  struct Pending {
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference keep;
    Napi::ObjectReference self;  // the RbdImage object, whose tsfn settles this
    const char* op;
    ssize_t ret = 0;
    explicit Pending(Napi::Env env, const char* o) : deferred(Napi::Promise::Deferred::New(env)), op(o) {}
  };

  std::shared_ptr<RbdImage> Live(Napi::Env env, const char* fn) {
    if (!img_) ThrowWithCode(env, std::string(fn) + ": the image is closed", "ERR_NITRIDE_RBD_CLOSED");
    return img_;
  }

  // Settles `p` (on the JS thread) once librbd completes.
  RbdDone Settle(Pending* p, std::shared_ptr<RbdImage> keep) {
    Napi::ThreadSafeFunction tsfn = tsfn_;
    return [p, tsfn, keep](ssize_t ret) mutable {
      p->ret = ret;
      DropOffLibrbdThread(std::move(keep));
      tsfn.NonBlockingCall(p, [](Napi::Env env, Napi::Function, Pending* p) {
        std::unique_ptr<Pending> own(p);
        Unwrap(p->self.Value())->Settled(env);
        if (p->ret < 0) p->deferred.Reject(ErrnoValue(env, std::string("rbd ") + p->op, static_cast<int>(-p->ret), p->op));
        else p->deferred.Resolve(env.Undefined());
      });
    };
  }

  Napi::Value Aio(const Napi::CallbackInfo& info, const char* op, const std::function<int(RbdImage&, rbd_completion_t)>& start,
                  Napi::Value keep) {
    Napi::Env env = info.Env();
    auto img = Live(env, op);
    auto* p = new Pending(env, op);
    if (!keep.IsUndefined()) p->keep = Napi::Persistent(keep.As<Napi::Object>());
    p->self = Napi::Persistent(info.This().As<Napi::Object>());
    Napi::Promise promise = p->deferred.Promise();
    int r = StartAio(*img, Settle(p, img), [&](rbd_completion_t c) { return start(*img, c); });
    if (r < 0) {
      p->deferred.Reject(ErrnoValue(env, std::string("rbd ") + op, -r, op));
      delete p;
    } else if (pending_++ == 0) {
      tsfn_.Ref(env);
    }
    return promise;
  }

  // An aio request settled (JS thread). Node stays up while requests are in
  // flight, as for fs promises: exiting under them would tear the addon down
  // beneath librbd's threads (they end within the cluster's op timeouts).
  void Settled(Napi::Env env) {
    if (--pending_ == 0) tsfn_.Unref(env);
  }

  // read(offset, buf): fills buf (bytes past the end of the image are refused by librbd).
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t off = UintArg(env, info[0], "offset");
    uint8_t* data;
    size_t len;
    BytesArg(env, info[1], "RbdImage.read", "buf", &data, &len);
    return Aio(info, "read", [=](RbdImage& img, rbd_completion_t c) {
      return Api().rbd_aio_read(img.image, off, len, reinterpret_cast<char*>(data), c);
    }, info[1]);
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t off = UintArg(env, info[0], "offset");
    uint8_t* data;
    size_t len;
    BytesArg(env, info[1], "RbdImage.write", "data", &data, &len);
    return Aio(info, "write", [=](RbdImage& img, rbd_completion_t c) {
      return Api().rbd_aio_write(img.image, off, len, reinterpret_cast<const char*>(data), c);
    }, info[1]);
  }

  // flush(): every completed write is acknowledged by the OSDs (past librbd's cache).
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    return Aio(info, "flush", [](RbdImage& img, rbd_completion_t c) { return Api().rbd_aio_flush(img.image, c); }, info.Env().Undefined());
  }

  Napi::Value Discard(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t off = UintArg(env, info[0], "offset"), len = UintArg(env, info[1], "length");
    return Aio(info, "discard", [=](RbdImage& img, rbd_completion_t c) {
      return Api().rbd_aio_discard(img.image, off, len, c);
    }, env.Undefined());
  }

  Napi::Value WriteZeroes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t off = UintArg(env, info[0], "offset"), len = UintArg(env, info[1], "length");
    return Aio(info, "write_zeroes", [=](RbdImage& img, rbd_completion_t c) {
      return Api().rbd_aio_write_zeroes(img.image, off, len, c, 0, 0);
    }, env.Undefined());
  }

  Napi::Value Resize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "resize");
    uint64_t size = UintArg(env, info[0], "size");
    return Blocking::Run(env, "rbd resize", "rbd_resize", [img, size] {
      int r = Api().rbd_resize(img->image, size);
      if (r == 0) img->size = size;
      return r;
    });
  }

  // metadataGet(key): the value, or null if the image has no such key.
  Napi::Value MetadataGet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "metadataGet");
    std::string key = StringArg(env, info[0], "key");
    auto value = std::make_shared<std::string>();
    auto found = std::make_shared<bool>(true);
    return Blocking::Run(env, "rbd metadata get " + key, "rbd_metadata_get", [img, key, value, found] {
      size_t len = 4096;
      for (;;) {
        value->assign(len, '\0');
        int r = Api().rbd_metadata_get(img->image, key.c_str(), &(*value)[0], &len);
        if (r == -ENOENT) {
          *found = false;
          return 0;
        }
        if (r == -ERANGE) continue;  // len now says how much is needed
        if (r < 0) return r;
        value->resize(strnlen(value->data(), len));
        return 0;
      }
    }, [value, found](Napi::Env env) -> Napi::Value {
      return *found ? Napi::String::New(env, *value) : env.Null();
    });
  }

  Napi::Value MetadataSet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "metadataSet");
    std::string key = StringArg(env, info[0], "key"), value = StringArg(env, info[1], "value");
    return Blocking::Run(env, "rbd metadata set " + key, "rbd_metadata_set", [img, key, value] {
      return Api().rbd_metadata_set(img->image, key.c_str(), value.c_str());
    });
  }

  Napi::Value MetadataRemove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "metadataRemove");
    std::string key = StringArg(env, info[0], "key");
    return Blocking::Run(env, "rbd metadata remove " + key, "rbd_metadata_remove", [img, key] {
      int r = Api().rbd_metadata_remove(img->image, key.c_str());
      return r == -ENOENT ? 0 : r;
    });
  }

  // lock(cookie): an exclusive advisory lock (EBUSY: someone else holds it). An image made
  // with librbd's exclusive-lock feature loses it first (with the features that need it):
  // the managed lock and an advisory one share the header's lock, and the holder's own
  // writes would wait for ever for the managed one.
  Napi::Value Lock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "lock");
    std::string cookie = StringArg(env, info[0], "cookie");
    return Blocking::Run(env, "rbd lock", "rbd_lock_exclusive", [img, cookie] {
      uint64_t features = 0;
      int r = Api().rbd_get_features(img->image, &features);
      if (r < 0) return r;
      uint64_t dependents = features & (RBD_FEATURE_FAST_DIFF | RBD_FEATURE_OBJECT_MAP | RBD_FEATURE_JOURNALING);
      if (dependents && (r = Api().rbd_update_features(img->image, dependents, 0)) < 0) return r;
      if ((features & RBD_FEATURE_EXCLUSIVE_LOCK) && (r = Api().rbd_update_features(img->image, RBD_FEATURE_EXCLUSIVE_LOCK, 0)) < 0) return r;
      return Api().rbd_lock_exclusive(img->image, cookie.c_str());
    });
  }

  Napi::Value Unlock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "unlock");
    std::string cookie = StringArg(env, info[0], "cookie");
    return Blocking::Run(env, "rbd unlock", "rbd_unlock", [img, cookie] { return Api().rbd_unlock(img->image, cookie.c_str()); });
  }

  Napi::Value BreakLock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "breakLock");
    std::string client = StringArg(env, info[0], "client"), cookie = StringArg(env, info[1], "cookie");
    return Blocking::Run(env, "rbd break lock", "rbd_break_lock", [img, client, cookie] {
      return Api().rbd_break_lock(img->image, client.c_str(), cookie.c_str());
    });
  }

  // lockers(): [{client, cookie, address}] of the advisory locks.
  Napi::Value Lockers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "lockers");
    struct Out {
      std::vector<std::string> client, cookie, addr;
    };
    auto out = std::make_shared<Out>();
    return Blocking::Run(env, "rbd list lockers", "rbd_list_lockers", [img, out] {
      size_t n = 1024;
      for (;;) {
        std::vector<char> tag(n), clients(n), cookies(n), addrs(n);
        size_t tl = n, cl = n, kl = n, al = n;
        int excl = 0;
        ssize_t r = Api().rbd_list_lockers(img->image, &excl, tag.data(), &tl, clients.data(), &cl, cookies.data(), &kl, addrs.data(), &al);
        if (r == -ERANGE) {
          n = std::max({tl, cl, kl, al, n * 2});
          continue;
        }
        if (r < 0) return static_cast<int>(r);
        auto split = [](const std::vector<char>& b, size_t len, std::vector<std::string>* v) {
          for (size_t i = 0; i < len;) {
            size_t l = strnlen(b.data() + i, len - i);
            if (l == 0 && v->size() >= 1 && i + 1 >= len) break;
            v->emplace_back(b.data() + i, l);
            i += l + 1;
          }
        };
        split(clients, cl, &out->client);
        split(cookies, kl, &out->cookie);
        split(addrs, al, &out->addr);
        out->client.resize(static_cast<size_t>(r));
        out->cookie.resize(static_cast<size_t>(r));
        out->addr.resize(static_cast<size_t>(r));
        return 0;
      }
    }, [out](Napi::Env env) -> Napi::Value {
      Napi::Array a = Napi::Array::New(env, out->client.size());
      for (size_t i = 0; i < out->client.size(); ++i) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("client", out->client[i]);
        o.Set("cookie", out->cookie[i]);
        o.Set("address", out->addr[i]);
        a.Set(static_cast<uint32_t>(i), o);
      }
      return a;
    });
  }

  // snapCreate(name): a snapshot, protected at once (clones need a protected parent snapshot,
  // and unprotecting one that has clones fails: EBUSY).
  Napi::Value SnapCreate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "snapCreate");
    std::string name = StringArg(env, info[0], "name");
    return Blocking::Run(env, "rbd snap create " + name, "rbd_snap_create", [img, name] {
      int r = Api().rbd_snap_create(img->image, name.c_str());
      return r < 0 ? r : Api().rbd_snap_protect(img->image, name.c_str());
    });
  }

  // snapRemove(name): unprotect (EBUSY while it has clones) and remove.
  Napi::Value SnapRemove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "snapRemove");
    std::string name = StringArg(env, info[0], "name");
    return Blocking::Run(env, "rbd snap remove " + name, "rbd_snap_unprotect", [img, name] {
      int r = Api().rbd_snap_unprotect(img->image, name.c_str());
      if (r < 0 && r != -EINVAL) return r;  // EINVAL: not protected
      return Api().rbd_snap_remove(img->image, name.c_str());
    });
  }

  // snapList(): [{name, size}]
  Napi::Value SnapList(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "snapList");
    auto out = std::make_shared<std::vector<std::pair<std::string, uint64_t>>>();
    return Blocking::Run(env, "rbd snap ls", "rbd_snap_list", [img, out] {
      int max = 16;
      for (;;) {
        std::vector<rbd_snap_info_t> snaps(static_cast<size_t>(max));
        int r = Api().rbd_snap_list(img->image, snaps.data(), &max);
        if (r == -ERANGE) continue;  // max now says how many
        if (r < 0) return r;
        for (int i = 0; i < r; ++i) out->emplace_back(snaps[i].name, snaps[i].size);
        Api().rbd_snap_list_end(snaps.data());
        return 0;
      }
    }, [out](Napi::Env env) -> Napi::Value {
      Napi::Array a = Napi::Array::New(env, out->size());
      for (size_t i = 0; i < out->size(); ++i) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", (*out)[i].first);
        o.Set("size", static_cast<double>((*out)[i].second));
        a.Set(static_cast<uint32_t>(i), o);
      }
      return a;
    });
  }

  // allocated(offset, length): the stored ranges within [offset, offset+length) as a flat
  // [off0, len0, off1, len1, ...], sorted and merged (rbd_diff_iterate2 from the image's
  // creation, parent included so a clone's shared data counts, whole objects). Everything
  // else was never written or was discarded: it reads as zeroes. librbd may report objects
  // out of order (it diffs them concurrently), hence the sort.
  Napi::Value Allocated(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto img = Live(env, "allocated");
    uint64_t off = UintArg(env, info[0], "offset"), len = UintArg(env, info[1], "length");
    using Runs = std::vector<std::pair<uint64_t, uint64_t>>;
    auto out = std::make_shared<Runs>();
    return Blocking::Run(env, "rbd diff", "rbd_diff_iterate2", [img, off, len, out] {
      auto cb = [](uint64_t o, size_t l, int exists, void* arg) -> int {
        if (exists && l > 0) static_cast<Runs*>(arg)->emplace_back(o, l);
        return 0;
      };
      int r = Api().rbd_diff_iterate2(img->image, nullptr, off, len, 1, 1, cb, out.get());
      if (r < 0) return r;
      Runs runs;
      std::sort(out->begin(), out->end());
      const uint64_t end = off + len;
      for (auto [o, l] : *out) {
        uint64_t s = std::max(o, off), t = std::min(o + l, end);  // whole objects overhang the range
        if (t <= s) continue;
        if (!runs.empty() && runs.back().first + runs.back().second >= s) {
          runs.back().second = std::max(runs.back().first + runs.back().second, t) - runs.back().first;
        } else {
          runs.emplace_back(s, t - s);
        }
      }
      out->swap(runs);
      return 0;
    }, [out](Napi::Env env) -> Napi::Value {
      Napi::Array a = Napi::Array::New(env, out->size() * 2);
      for (size_t i = 0; i < out->size(); ++i) {
        a.Set(static_cast<uint32_t>(2 * i), static_cast<double>((*out)[i].first));
        a.Set(static_cast<uint32_t>(2 * i + 1), static_cast<double>((*out)[i].second));
      }
      return a;
    });
  }

  // close(): drops this object's share; the image is closed (and flushed)
  // by its last owner, on the threadpool if that is us.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<RbdImage> img = std::move(img_);
    img_.reset();
    if (!img) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    auto holder = std::make_shared<std::shared_ptr<RbdImage>>(std::move(img));
    return Blocking::Run(env, "rbd close", "rbd_close", [holder] {
      holder->reset();
      return 0;
    });
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), img_ ? static_cast<double>(img_->size) : 0);
  }

  Napi::Value Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !img_); }

  std::shared_ptr<RbdImage> img_;
  Napi::ThreadSafeFunction tsfn_;
  size_t pending_ = 0;  // aio requests in flight (JS thread only)
};

// ---------------------------------------------------------------------------

class RbdClusterWrap : public Napi::ObjectWrap<RbdClusterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RbdCluster",
                       {
                           StaticMethod<&RbdClusterWrap::Connect>("connect"),
                           InstanceMethod<&RbdClusterWrap::Create>("create"),
                           InstanceMethod<&RbdClusterWrap::Remove>("remove"),
                           InstanceMethod<&RbdClusterWrap::Clone>("clone"),
                           InstanceMethod<&RbdClusterWrap::List>("list"),
                           InstanceMethod<&RbdClusterWrap::Open>("open"),
                           InstanceMethod<&RbdClusterWrap::Address>("address"),
                           InstanceMethod<&RbdClusterWrap::Blocklist>("blocklist"),
                           InstanceMethod<&RbdClusterWrap::Close>("close"),
                       });
  }

  explicit RbdClusterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RbdClusterWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal()) ThrowTypeError(env, "RbdCluster: use RbdCluster.connect()");
    cluster_ = std::move(*info[0].As<Napi::External<std::shared_ptr<RbdCluster>>>().Data());
  }

 private:
  // connect({conf, id, pool, timeoutSeconds}) → Promise<RbdCluster>
  static Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireLoaded(env);
    if (!info[0].IsObject()) ThrowTypeError(env, "RbdCluster.connect: options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string conf = StringArg(env, o.Get("conf"), "conf");
    std::string id = StringArg(env, o.Get("id"), "id");
    std::string pool = StringArg(env, o.Get("pool"), "pool");
    uint64_t timeout = 30;
    OptionalUint(o, "timeoutSeconds", 3600, "RbdCluster.connect", &timeout);
    auto c = std::make_shared<RbdCluster>();
    return Blocking::Run(env, "ceph connect (" + conf + ", client." + id + ", pool " + pool + ")", "rados_connect", [c, conf, id, pool, timeout] {
      const RbdApi& a = Api();
      int r = a.rados_create2(&c->cluster, "ceph", ("client." + id).c_str(), 0);
      if (r < 0) {
        c->cluster = nullptr;
        return r;
      }
      if ((r = a.rados_conf_read_file(c->cluster, conf.c_str())) < 0) return r;
      std::string t = std::to_string(timeout);
      // An op pending longer than objecter_timeout makes the client ask the mon for the
      // newest OSD map (at the next objecter tick). Left at its default (10 s) above the op
      // timeout, every op is cancelled before it lags: after a restart of the whole cluster
      // (the OSDs on new addresses) a connection kept sending to the old ones for good.
      std::string lag = std::to_string(std::min(10.0, timeout / 2.0));
      std::string tick = std::to_string(std::min(5.0, std::max(0.5, timeout / 4.0)));
      // Ceph trouble is an error after `timeout`, never a hang; no admin socket (two
      // daemons with one config would fight over its path); discards that read back as
      // zeroes (librbd skips partial-object discards by default); nothing on stderr.
      for (auto kv : std::vector<std::pair<const char*, std::string>>{{"rados_osd_op_timeout", t},
                                                                       {"rados_mon_op_timeout", t},
                                                                       {"client_mount_timeout", t},
                                                                       {"objecter_timeout", lag},
                                                                       {"objecter_tick_interval", tick},
                                                                       {"admin_socket", ""},
                                                                       // breaking a lock does not blocklist by itself: the volume
                                                                       // layer fences the holder first, for as long as it chooses
                                                                       {"rbd_blocklist_on_break_lock", "false"},
                                                                       // a discarded range must read back as zeroes (holes), also below an object
                                                                       {"rbd_skip_partial_discard", "false"},
                                                                       {"log_to_stderr", "false"},
                                                                       {"err_to_stderr", "false"}}) {
        if ((r = a.rados_conf_set(c->cluster, kv.first, kv.second.c_str())) < 0) return r;
      }
      if ((r = a.rados_connect(c->cluster)) < 0) return r;
      return a.rados_ioctx_create(c->cluster, pool.c_str(), &c->ioctx);
    }, [c](Napi::Env env) -> Napi::Value {
      return g_cluster_ctor->New({Napi::External<std::shared_ptr<RbdCluster>>::New(env, new std::shared_ptr<RbdCluster>(c), [](Napi::Env, std::shared_ptr<RbdCluster>* p) { delete p; })});
    });
  }

  std::shared_ptr<RbdCluster> Live(Napi::Env env, const char* fn) {
    if (!cluster_) ThrowWithCode(env, std::string(fn) + ": the cluster connection is closed", "ERR_NITRIDE_RBD_CLOSED");
    return cluster_;
  }

  // create(name, size): a new image with layering only (clones). Not exclusive-lock: one
  // writer at a time is an advisory lock naming the host (lock()), and librbd's managed lock
  // would take that lock's place on the header (see the README, "one writer at a time").
  Napi::Value Create(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "create");
    std::string name = StringArg(env, info[0], "name");
    uint64_t size = UintArg(env, info[1], "size");
    return Blocking::Run(env, "rbd create " + name, "rbd_create2", [c, name, size] {
      int order = 0;
      return Api().rbd_create2(c->ioctx, name.c_str(), size, RBD_FEATURE_LAYERING, &order);
    });
  }

  // clone(parent, snap, child): a copy-on-write child of a protected snapshot, layering only (as create()).
  Napi::Value Clone(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "clone");
    std::string parent = StringArg(env, info[0], "parent"), snap = StringArg(env, info[1], "snap"), child = StringArg(env, info[2], "child");
    return Blocking::Run(env, "rbd clone " + parent + "@" + snap + " " + child, "rbd_clone", [c, parent, snap, child] {
      int order = 0;
      return Api().rbd_clone(c->ioctx, parent.c_str(), snap.c_str(), c->ioctx, child.c_str(), RBD_FEATURE_LAYERING, &order);
    });
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "remove");
    std::string name = StringArg(env, info[0], "name");
    return Blocking::Run(env, "rbd remove " + name, "rbd_remove", [c, name] { return Api().rbd_remove(c->ioctx, name.c_str()); });
  }

  // list(): the pool's image names.
  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "list");
    auto names = std::make_shared<std::vector<std::string>>();
    return Blocking::Run(env, "rbd list", "rbd_list", [c, names] {
      size_t n = 64;
      for (;;) {
        std::vector<rbd_image_spec_t> specs(n);
        int r = Api().rbd_list2(c->ioctx, specs.data(), &n);
        if (r == -ERANGE) continue;  // n now says how many
        if (r < 0) return r;
        for (size_t i = 0; i < n; ++i) names->emplace_back(specs[i].name);
        Api().rbd_image_spec_list_cleanup(specs.data(), n);
        return 0;
      }
    }, [names](Napi::Env env) -> Napi::Value {
      Napi::Array a = Napi::Array::New(env, names->size());
      for (size_t i = 0; i < names->size(); ++i) a.Set(static_cast<uint32_t>(i), (*names)[i]);
      return a;
    });
  }

  // open(name, readOnly?) → Promise<RbdImage>
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "open");
    std::string name = StringArg(env, info[0], "name");
    bool ro = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    auto img = std::make_shared<RbdImage>();
    img->cluster = c;
    return Blocking::Run(env, "rbd open " + name, "rbd_open", [img, c, name, ro] {
      int r = ro ? Api().rbd_open_read_only(c->ioctx, name.c_str(), &img->image, nullptr)
                 : Api().rbd_open(c->ioctx, name.c_str(), &img->image, nullptr);
      if (r < 0) {
        img->image = nullptr;
        return r;
      }
      return Api().rbd_get_size(img->image, &img->size);
    }, [img](Napi::Env env) -> Napi::Value {
      return g_image_ctor->New({Napi::External<std::shared_ptr<RbdImage>>::New(env, new std::shared_ptr<RbdImage>(img), [](Napi::Env, std::shared_ptr<RbdImage>* p) { delete p; })});
    });
  }

  // address(): this client's address as the cluster sees it (what a lock records, what fencing blocklists).
  Napi::Value Address(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "address");
    auto out = std::make_shared<std::string>();
    return Blocking::Run(env, "rados getaddrs", "rados_getaddrs", [c, out] {
      char* addrs = nullptr;
      int r = Api().rados_getaddrs(c->cluster, &addrs);
      if (r < 0) return r;
      *out = addrs ? addrs : "";
      Api().rados_buffer_free(addrs);
      return 0;
    }, [out](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *out); });
  }

  // blocklist(address, seconds): the OSDs refuse that client from now on (fencing).
  Napi::Value Blocklist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto c = Live(env, "blocklist");
    std::string addr = StringArg(env, info[0], "address");
    uint64_t secs = UintArg(env, info[1], "seconds");
    return Blocking::Run(env, "ceph osd blocklist add " + addr, "rados_blocklist_add", [c, addr, secs] {
      return Api().rados_blocklist_add(c->cluster, const_cast<char*>(addr.c_str()), static_cast<uint32_t>(secs));
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto holder = std::make_shared<std::shared_ptr<RbdCluster>>(std::move(cluster_));
    cluster_.reset();
    return Blocking::Run(env, "ceph disconnect", "rados_shutdown", [holder] {
      holder->reset();
      return 0;
    });
  }

  std::shared_ptr<RbdCluster> cluster_;
};

}  // namespace

const RbdApi* Rbd() { return g_loaded.load() ? &g_api : nullptr; }

RbdCluster::~RbdCluster() {
  if (ioctx) Api().rados_ioctx_destroy(ioctx);
  if (cluster) Api().rados_shutdown(cluster);
}

RbdImage::~RbdImage() {
  if (image) Api().rbd_close(image);
}

std::shared_ptr<RbdImage> RbdImageArg(Napi::Env env, Napi::Value v, const char* fn) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_image_ctor->Value())) {
    ThrowTypeError(env, std::string(fn) + ": expected an RbdImage");
  }
  auto img = RbdImageWrap::Unwrap(v.As<Napi::Object>())->image();
  if (!img) ThrowWithCode(env, std::string(fn) + ": the image is closed", "ERR_NITRIDE_RBD_CLOSED");
  return img;
}

int RbdAioRead(RbdImage& img, uint64_t off, size_t len, uint8_t* buf, RbdDone done) {
  return StartAio(img, std::move(done), [&](rbd_completion_t c) { return Api().rbd_aio_read(img.image, off, len, reinterpret_cast<char*>(buf), c); });
}

int RbdAioWrite(RbdImage& img, uint64_t off, size_t len, const uint8_t* buf, RbdDone done) {
  return StartAio(img, std::move(done), [&](rbd_completion_t c) { return Api().rbd_aio_write(img.image, off, len, reinterpret_cast<const char*>(buf), c); });
}

void InitRbd(Napi::Env env, Napi::Object exports) {
  Napi::Function image = RbdImageWrap::Define(env);
  Napi::Function cluster = RbdClusterWrap::Define(env);
  g_image_ctor = new Napi::FunctionReference(Napi::Persistent(image));
  g_cluster_ctor = new Napi::FunctionReference(Napi::Persistent(cluster));
  exports.Set("RbdImage", image);
  exports.Set("RbdCluster", cluster);
}

}  // namespace nitride
