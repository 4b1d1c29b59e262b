// librbd for the addon (rbd.cc): the C API loaded with dlopen when a daemon is
// first given a Ceph cluster, so that the addon builds against librbd-dev's
// headers but loads, and serves file volumes, on a host without librbd.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "nitride.h"

namespace nitride {

// The entry points used, typed from the headers (never referenced directly: no
// undefined symbols in the .node file).
struct RbdApi {
#define NITRIDE_RBD_FN(name) decltype(&::name) name = nullptr;
#define NITRIDE_RBD_FUNCTIONS(X)                                                          \
  X(rados_create2) X(rados_conf_read_file) X(rados_conf_set) X(rados_connect)             \
  X(rados_shutdown) X(rados_ioctx_create) X(rados_ioctx_destroy) X(rados_blocklist_add)   \
  X(rados_getaddrs) X(rados_buffer_free)                                                  \
  X(rbd_create2) X(rbd_remove) X(rbd_list2) X(rbd_image_spec_list_cleanup) X(rbd_open) X(rbd_open_read_only) X(rbd_close)  \
  X(rbd_get_size) X(rbd_resize) X(rbd_aio_create_completion) X(rbd_aio_get_return_value)  \
  X(rbd_aio_release) X(rbd_aio_read) X(rbd_aio_write) X(rbd_aio_flush) X(rbd_aio_discard) \
  X(rbd_aio_write_zeroes) X(rbd_metadata_get) X(rbd_metadata_set) X(rbd_lock_exclusive)   \
  X(rbd_unlock) X(rbd_break_lock) X(rbd_list_lockers) X(rbd_get_features) X(rbd_update_features)                                 \
  X(rbd_snap_create) X(rbd_snap_remove) X(rbd_snap_protect) X(rbd_snap_unprotect) X(rbd_snap_list) \
  X(rbd_snap_list_end) X(rbd_clone) X(rbd_metadata_remove) X(rbd_diff_iterate2)
  NITRIDE_RBD_FUNCTIONS(NITRIDE_RBD_FN)
#undef NITRIDE_RBD_FN
};

// The loaded API (nullptr until LoadRbd succeeded).
const RbdApi* Rbd();

// A connection to a cluster and an I/O context on the volumes' pool.
struct RbdCluster {
  rados_t cluster = nullptr;
  rados_ioctx_t ioctx = nullptr;
  ~RbdCluster();
};

// An open image. Shared by the JS object and every NBD lane using it: closed
// (rbd_close, which flushes) when the last owner lets go.
struct RbdImage {
  std::shared_ptr<RbdCluster> cluster;
  rbd_image_t image = nullptr;
  uint64_t size = 0;
  // Set once a request failed with EBLOCKLISTED (-ESHUTDOWN): this client was fenced, and the
  // image refuses every later request itself, even after the blocklist entry expires.
  std::atomic<bool> fenced{false};
  ~RbdImage();
};

// Reads argument `v` as an open RbdImage (TypeError otherwise). Main thread only.
std::shared_ptr<RbdImage> RbdImageArg(Napi::Env env, Napi::Value v, const char* fn);

// Starts an asynchronous read/write/flush of the image; `done` runs once on a
// librbd thread with librbd's return value (bytes or 0 on success, -errno).
// Returns librbd's error if the request could not be started (done not called).
using RbdDone = std::function<void(ssize_t)>;
int RbdAioRead(RbdImage& img, uint64_t off, size_t len, uint8_t* buf, RbdDone done);
int RbdAioWrite(RbdImage& img, uint64_t off, size_t len, const uint8_t* buf, RbdDone done);

}  // namespace nitride
