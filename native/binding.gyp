# nitride_native: TAP devices, SO_PEERCRED, sd_notify, AES-256-XTS sector
# encryption, AES-256-GCM (gcm*.cc), block-volume I/O (fallocate, SEEK_DATA, pread+decrypt and
# encrypt+pwrite on the threadpool) and the VPC data plane (vpc_*.cc: a
# worker thread forwarding guest frames over AF_PACKET and AES-256-GCM UDP)
# for nitride. Built by `npm install`
# (package.json "install" script) or by hand with
# `npx node-gyp rebuild --directory=native`; with .npmrc's nodedir=/usr,
# headers come from /usr/include/node (no download).
#
# OpenSSL linking: we deliberately do NOT link -lcrypto. Node.js exports the
# symbols of the OpenSSL it carries (documented in the Node.js addon docs:
# "only the libuv, OpenSSL, V8, and zlib symbols are purposefully re-exported
# by Node.js and may be used by addons"), and node-gyp puts node's own OpenSSL
# headers (/usr/include/node/openssl) first on the include path. So the addon
# compiles against the exact headers of the OpenSSL that will run it, and the
# EVP_* / OPENSSL_cleanse references stay undefined in the .node file and bind
# to node's copy when node dlopen()s it. This keeps one OpenSSL (one default
# library context, one provider set, one error queue) in the process.
# Linking -lcrypto would also "work" here (node's executable comes first in the
# global lookup scope, so the addon would still bind to node's copy) but it
# loads a second, mostly unused libcrypto.so.3 whose internal references can
# end up split between the two copies: fine while both are 3.0.x, fragile
# otherwise. For a node built with --shared-openssl the same unlinked .node
# binds to the system libcrypto that node itself loaded.
# -Wl,-z,now makes a missing symbol fail at load time (clear dlopen error)
# instead of aborting the process on the first call, since node's
# process.dlopen uses RTLD_LAZY.
{
  'targets': [
    {
      'target_name': 'nitride_native',
      'sources': [
        'src/addon.cc',
        'src/errors.cc',
        'src/tap.cc',
        'src/peercred.cc',
        'src/sdnotify.cc',
        'src/memfd.cc',
        'src/process.cc',
        'src/listen.cc',
        'src/xts.cc',
        'src/xts_vaes.cc',
        'src/gcm.cc',
        'src/gcm_vaes.cc',
        'src/gcm_napi.cc',
        'src/blockio.cc',
        'src/vpc_crypto.cc',
        'src/vpc_frame.cc',
        'src/vpc_engine.cc',
        'src/vpc_sg.cc',
        'src/vpc_nacl.cc',
        'src/vpc_flowlog.cc',
        'src/vpc_napi.cc',
        'src/nbd_lane.cc',
        'src/rbd.cc',
        'src/io_limiter.cc',
      ],
      # node-addon-api with C++ exceptions. This is what its
      # node_addon_api_except target (except.gypi) sets; it is spelled out
      # here because depending on that target makes gyp write Makefiles for
      # it into native/node_modules/ (outside build/).
      'include_dirs': [
        "<!(node -p \"require('node-addon-api').include_dir\")",
      ],
      'defines': [
        'NAPI_CPP_EXCEPTIONS',
        'NAPI_VERSION=8',
        'NODE_ADDON_API_DISABLE_DEPRECATED',
      ],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-std=gnu++17'],
      'cflags_cc': ['-std=c++17', '-Wall', '-Wextra', '-Wno-unused-parameter'],
      # librbd/librados: dlopen()ed by rbd.cc on first use, not linked (see rbd.h).
      'ldflags': ['-Wl,-z,now'],
      'libraries': ['-ldl'],
    },
  ],
}
