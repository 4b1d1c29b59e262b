# Sourced by scripts/*.sh: make a fresh Debian 12 host ready to build and run nitride.
# Installs only what is missing: Debian packages (apt-get), node_modules (npm ci, which
# also builds the native addon and compiles the TypeScript). Idempotent and quiet when
# everything is there.

NITRIDE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

die() { echo "nitride: $*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" = 0 ] || die "run this as root (TAP devices, namespaces and /run/nitride need it)"
}

require_node() {
  command -v node >/dev/null || die "Node.js >= 20.17 is required (Debian 12's nodejs 18 is too old)"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "Node.js >= 20.17 is required, found $(node --version)"
  command -v npm >/dev/null || die "npm is required"
}

# ensure_packages PKG... : apt-get install the ones not installed yet.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "nitride: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_node_modules: npm ci when node_modules is missing or older than the lock file,
# then make sure the native addon and dist/ are built (npm ci runs both).
ensure_node_modules() {
  cd "$NITRIDE_ROOT"
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "nitride: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  local addon=native/build/Release/nitride_native.node
  if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
    echo "nitride: building the native addon"
    npx --no-install node-gyp rebuild --directory=native --loglevel=error >/dev/null
  fi
  npm run --silent build
}

# bench_options SCRIPT ARGS... : for the benchmark wrappers, before anything is installed,
# built or started: --help prints SCRIPT's usage and exits; a bad option is answered by SCRIPT
# (one line, exit 2).
bench_options() {
  local script="$1" arg
  shift
  require_node
  for arg in "$@"; do
    case "$arg" in -h | --help) exec node "$script" --help ;; esac
  done
  NITRIDE_BENCH_CHECK_ARGS=1 node "$script" "$@" || exit $?
}

# bench_netns_scratch TAG_PREFIX NAME ARGS... : for the benchmarks that run in network
# namespaces: sets SCRATCH (a new /tmp/nitride-bench-NAME.* directory) and TAG (TAG_PREFIX and four
# random hex digits: the prefix of every namespace the run makes). If the Node script is killed
# hard, on exit whatever runs in those namespaces is killed, they are deleted, and SCRATCH goes
# (unless ARGS hold --keep).
bench_netns_scratch() {
  local prefix="$1" name="$2" arg
  shift 2
  BENCH_KEEP=0
  for arg in "$@"; do [ "$arg" = --keep ] && BENCH_KEEP=1; done
  SCRATCH="$(mktemp -d "/tmp/nitride-bench-$name.XXXXXX")"
  TAG="$prefix$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
  trap bench_netns_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_netns_cleanup() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ "$BENCH_KEEP" = 1 ] || rm -rf "$SCRATCH"
}

# Packages every script needs: the addon toolchain (librbd-dev: the headers of librbd's C API,
# which the addon loads with dlopen only when a daemon is given a Ceph cluster) and iproute2.
BASE_PACKAGES=(make g++ python3 iproute2 procps librbd-dev librados-dev)
# NBD clients the tests and the demo drive volumes with (libnbd's Python binding backs the
# protocol-abuse tests; it lives in Debian's /usr/bin/python3).
NBD_CLIENT_PACKAGES=(qemu-utils libnbd-bin python3-libnbd fio)
# VPC tests: guests in network namespaces run busybox's udhcpc and ping, and iperf3; tcpdump
# captures the underlay.
VPC_PACKAGES=(busybox-static iperf3 tcpdump)
# QEMU guests (nitride vm, scripts/build-guest.sh): QEMU, and what builds the test guest's
# initramfs (the kernel and nbd-client are fetched with apt-get download, not installed).
VM_PACKAGES=(qemu-system-x86 qemu-utils busybox-static cpio gzip)
# systemd tests: systemd-analyze (verify, security), and a real systemd booted with
# systemd-nspawn in a debootstrap'd Debian tree (scripts/lib/systemd-tree.sh).
SYSTEMD_PACKAGES=(systemd systemd-container debootstrap)

# Ceph (RBD-backed ebs volumes): a one-node cluster for tests, the demo and the benchmark
# (scripts/lib/ceph-one-node.sh), QEMU's rbd driver for the benchmark's peer, uuidgen.
CEPH_PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common uuid-runtime qemu-block-extra)

# etcd (fleet mode): the members of test clusters and the demo's, and etcdctl for their setup
# (RBAC) and checks. Debian's 3.4; the fleet needs etcd >= 3.4.
ETCD_PACKAGES=(etcd-server etcd-client openssl)

# bootstrap PKG... : everything a script needs before it runs nitride: root, Node, the
# Debian packages named (plus BASE_PACKAGES), node_modules, the addon and dist/; then cd to
# the checkout.
bootstrap() {
  require_root
  require_node
  ensure_packages "${BASE_PACKAGES[@]}" "$@"
  ensure_node_modules
  cd "$NITRIDE_ROOT"
}
