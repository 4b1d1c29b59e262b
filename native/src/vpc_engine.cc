// VPC data plane engine: sockets, tables (control side, JS thread) and the
// worker's per-frame loop. Design notes in vpc_engine.h, wire format in
// vpc_wire.h.
#include "vpc_engine.h"
#include "nitride.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/udp.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>

namespace nitride {
namespace vpc {

namespace {

constexpr uint64_t kWakeTag = uint64_t{1} << 32;
constexpr uint64_t kUdpTag = (uint64_t{1} << 32) + 1;
constexpr uint64_t kTimerTag = (uint64_t{1} << 32) + 2;
// Held frames due within 1 ms go with the ones due now: one timer wake-up
// and one send batch per ms, not per frame (at 50 kpps of small frames the
// wake-ups cost more than the frames). They were charged when queued, so
// going early only borrows from the bucket: the long-run rate is unchanged.
constexpr double kReleaseEarly = 1e-3;
constexpr int kSocketBuffer = 4 << 20;  // 4 MiB
// Receive rounds per readiness event before going back to epoll (fairness
// between sockets).
constexpr int kRounds = 4;
// The worker's scheduler slice: EEVDF's shortest (why: vpc_engine.h, Wake-ups).
constexpr uint64_t kWorkerSliceNs = 100000;

// Packet socket receive slot: virtio_net_hdr + a GSO super-frame (64 KiB of
// IP packet + Ethernet header), with some slack.
constexpr size_t kPortSlot = kVnetHdrBytes + 65536 + 64;
// Underlay datagram send slot: one datagram.
constexpr size_t kUdpSlot = 9216;
static_assert(kUdpSlot >= kMaxDatagram, "UDP slot too small");
// Underlay receive slot: with UDP_GRO the kernel hands over up to 64 KiB of
// coalesced same-size datagrams of one flow at once.
constexpr size_t kUdpRxSlot = 65536;
// UDP GSO (UDP_SEGMENT) limits: the payloads of one send form one IP packet
// before segmentation (at most 65535 bytes), and at most 64 segments
// (UDP_MAX_SEGMENTS was 64 before Linux 5.x raised it to 128).
constexpr size_t kMaxGsoBytes = 65000;
constexpr unsigned kMaxGsoSegments = 64;

[[noreturn]] void ThrowSys(const std::string& step, const char* syscall,
                           int err = errno) {
  throw VpcError{VpcError::kSystem, step, err, syscall};
}
[[noreturn]] void ThrowInvalid(const std::string& msg) {
  throw VpcError{VpcError::kInvalid, msg, 0, nullptr};
}

// A GSO super-frame of `len` bytes whose segments are at most `seg_len`
// (headers + gso_size) as it is on the wire: its segments, and its bytes
// with the headers repeated in each (what the allowances count).
void WireSize(size_t len, size_t seg_len, size_t gso_size, size_t* segments, size_t* wire) {
  if (gso_size == 0 || seg_len <= gso_size || len <= seg_len) return;  // one segment
  const size_t hdr = seg_len - gso_size;
  *segments = (len - hdr + gso_size - 1) / gso_size;
  *wire = len + (*segments - 1) * hdr;
}

// The allowances' and the poll window's clock (fine-grained: the coarse one moves in 4 ms steps,
// a whole bucket at some rates).
double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

int64_t ClockMs(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Sets a socket buffer size: the FORCE variant (root / CAP_NET_ADMIN, above
// net.core.[rw]mem_max) first, the plain one as a fallback. Best effort.
void SetSocketBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}


std::string AddressString(const sockaddr_storage& a, uint16_t* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
    *port = ntohs(s->sin_port);
  } else {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      inet_ntop(AF_INET, s->sin6_addr.s6_addr + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf);
    }
    *port = ntohs(s->sin6_port);
  }
  return buf;
}

}  // namespace

// Worker-owned I/O buffers and message vectors.
struct Engine::Buffers {
  std::unique_ptr<uint8_t[]> port_rx{new uint8_t[kBatch * kPortSlot]};
  mmsghdr port_msgs[kBatch];
  iovec port_iov[kBatch];

  std::unique_ptr<uint8_t[]> udp_rx{new uint8_t[kBatch * kUdpRxSlot]};
  mmsghdr udp_msgs[kBatch];
  iovec udp_iov[kBatch];
  sockaddr_storage udp_from[kBatch];
  alignas(cmsghdr) uint8_t udp_ctrl[kBatch][CMSG_SPACE(sizeof(int))];

  // Queued datagrams: one slot, iovec and destination each (udp_tx_msgs
  // sends them one by one), grouped into UDP GSO sends by udp_send_msgs.
  std::unique_ptr<uint8_t[]> udp_tx{new uint8_t[kBatch * kUdpSlot]};
  mmsghdr udp_tx_msgs[kBatch];
  iovec udp_tx_iov[kBatch];
  sockaddr_storage udp_tx_to[kBatch];
  mmsghdr udp_send_msgs[kBatch];
  alignas(cmsghdr) uint8_t udp_send_ctrl[kBatch][CMSG_SPACE(sizeof(uint16_t))];
  unsigned udp_send_first[kBatch];
  unsigned udp_send_count[kBatch];

  mmsghdr port_tx_msgs[kBatch];  // msg_iov set per flush (Engine::port_tx_iov_)

  std::unique_ptr<uint8_t[]> scratch{new uint8_t[kPortSlot]};

  Buffers() {
    std::memset(port_msgs, 0, sizeof port_msgs);
    std::memset(udp_msgs, 0, sizeof udp_msgs);
    std::memset(udp_tx_msgs, 0, sizeof udp_tx_msgs);
    std::memset(udp_send_msgs, 0, sizeof udp_send_msgs);
    std::memset(port_tx_msgs, 0, sizeof port_tx_msgs);
    for (unsigned i = 0; i < kBatch; ++i) {
      port_iov[i] = {port_rx.get() + i * kPortSlot, kPortSlot};
      port_msgs[i].msg_hdr.msg_iov = &port_iov[i];
      port_msgs[i].msg_hdr.msg_iovlen = 1;
      udp_iov[i] = {udp_rx.get() + i * kUdpRxSlot, kUdpRxSlot};
      udp_msgs[i].msg_hdr.msg_iov = &udp_iov[i];
      udp_msgs[i].msg_hdr.msg_iovlen = 1;
      udp_msgs[i].msg_hdr.msg_name = &udp_from[i];
      udp_tx_iov[i] = {udp_tx.get() + i * kUdpSlot, 0};
      udp_tx_msgs[i].msg_hdr.msg_iov = &udp_tx_iov[i];
      udp_tx_msgs[i].msg_hdr.msg_iovlen = 1;
      udp_tx_msgs[i].msg_hdr.msg_name = &udp_tx_to[i];
    }
  }
  uint8_t* UdpTxSlot(unsigned i) { return udp_tx.get() + i * kUdpSlot; }
};

Engine::Port::~Port() {
  if (fd >= 0) close(fd);
}

size_t Engine::EpKeyHash::operator()(const EpKey& k) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (uint8_t b : k.addr) h = (h ^ b) * 1099511628211ull;
  h = (h ^ (k.port & 0xff)) * 1099511628211ull;
  h = (h ^ (k.port >> 8)) * 1099511628211ull;
  return static_cast<size_t>(h);
}

Engine::EpKey Engine::KeyOf(const sockaddr_storage& a) {
  EpKey k{};
  if (a.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    k.addr[10] = k.addr[11] = 0xff;
    std::memcpy(k.addr + 12, &s->sin_addr, 4);
    k.port = s->sin_port;
  } else if (a.ss_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    std::memcpy(k.addr, &s->sin6_addr, 16);
    k.port = s->sin6_port;
  }
  return k;
}

// ---------------------------------------------------------------------------
// Construction, start, close.

Engine::Engine(const std::string& bind_address, uint16_t bind_port,
               uint32_t poll_max_us, std::function<void()> notify)
    : notify_(std::move(notify)), b_(new Buffers()) {
  port_tx_.reserve(kBatch);
  merge_iov_.reserve(kMaxMergeIov + kMaxMergeSegments);
  port_tx_iov_.reserve(2 * kBatch + kMaxMergeIov + kMaxMergeSegments);
  std::string err;
  if (!GcmAvailable(&err)) ThrowInvalid(err);
  if (poll_max_us > kPollMaxLimitUs) ThrowInvalid("pollUs must be at most " + std::to_string(kPollMaxLimitUs));
  poll_ = PollWindow(poll_max_us * 1e-6);

  sockaddr_storage ss{};
  socklen_t sslen;
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, bind_address.c_str(), &a4) == 1) {
    family_ = AF_INET;
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_addr = a4;
    s->sin_port = htons(bind_port);
    sslen = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, bind_address.c_str(), &a6) == 1) {
    family_ = AF_INET6;
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_addr = a6;
    s->sin6_port = htons(bind_port);
    sslen = sizeof(sockaddr_in6);
  } else {
    ThrowInvalid("bindAddress \"" + bind_address +
                 "\" is not a numeric IPv4 or IPv6 address");
  }

  FdGuard udp(socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (udp.get() < 0) ThrowSys("socket(UDP)", "socket");
  if (family_ == AF_INET6) {
    int off = 0;  // dual stack: IPv4 peers as ::ffff:a.b.c.d
    setsockopt(udp.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  SetSocketBuffer(udp.get(), SO_RCVBUFFORCE, SO_RCVBUF, kSocketBuffer);
  SetSocketBuffer(udp.get(), SO_SNDBUFFORCE, SO_SNDBUF, kSocketBuffer);
  // Receive coalesced datagrams (UDP GRO, Linux 5.0+) when available.
  int on = 1;
  udp_gro_ = setsockopt(udp.get(), IPPROTO_UDP, UDP_GRO, &on, sizeof on) == 0;
  if (bind(udp.get(), reinterpret_cast<sockaddr*>(&ss), sslen) != 0) {
    ThrowSys("bind " + bind_address + ":" + std::to_string(bind_port), "bind");
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (getsockname(udp.get(), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) {
    ThrowSys("getsockname", "getsockname");
  }
  AddressString(bound, &port_);

  FdGuard ep(epoll_create1(EPOLL_CLOEXEC));
  if (ep.get() < 0) ThrowSys("epoll_create1", "epoll_create1");
  FdGuard wake(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake.get() < 0) ThrowSys("eventfd", "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
    ThrowSys("epoll_ctl", "epoll_ctl");
  }
  ev.data.u64 = kUdpTag;
  if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, udp.get(), &ev) != 0) {
    ThrowSys("epoll_ctl", "epoll_ctl");
  }
  FdGuard timer(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (timer.get() < 0) ThrowSys("timerfd_create", "timerfd_create");
  ev.data.u64 = kTimerTag;
  if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, timer.get(), &ev) != 0) {
    ThrowSys("epoll_ctl", "epoll_ctl");
  }
  udp_fd_ = udp.release();
  epfd_ = ep.release();
  wakefd_ = wake.release();
  timerfd_ = timer.release();
}

Engine::~Engine() { Close(); }

void Engine::Start() {
  // The worker blocks every signal (like libuv's threadpool), so that
  // process signals go to node's threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    worker_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ThrowSys("starting the worker thread", "pthread_create", e.code().value());
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_setname_np(worker_.native_handle(), "nitride-vpc");
}

void Engine::Close() {
  if (closed_) return;
  closed_ = true;
  stop_.store(true, std::memory_order_release);
  if (wakefd_ >= 0) {
    uint64_t one = 1;
    ssize_t r = write(wakefd_, &one, sizeof one);
    (void)r;
  }
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mu_);
  port_tx_.clear();
  released_.clear();
  for (auto& p : shaping_) {
    p->held_in = HeldQueue();
    p->held_out = HeldQueue();
    p->shaping = false;
  }
  shaping_.clear();
  // Ports and peers stay in the tables (stats() still reports their
  // counters); their sockets close and their sessions are freed (OpenSSL
  // cleanses the key schedules) now.
  for (auto& [id, p] : ports_) {
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
  }
  for (auto& [id, p] : peers_) {
    p->current.reset();
    p->previous.reset();
    p->next.reset();
  }
  by_index_.clear();
  for (int* fd : {&udp_fd_, &epfd_, &wakefd_, &timerfd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void Engine::RequireOpen(const char* fn) const {
  if (closed_) {
    throw VpcError{VpcError::kClosed, std::string(fn) + ": the engine is closed", 0, nullptr};
  }
}

// ---------------------------------------------------------------------------
// Control side (JS thread).

void Engine::AddPort(uint32_t id, const std::string& ifname, const PortConfig& cfg, int existing_fd) {
  RequireOpen("addPort");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ports_.count(id)) ThrowInvalid("addPort: port " + std::to_string(id) + " already exists");
  }
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
    ThrowInvalid("addPort: bad interface name \"" + ifname + "\"");
  }
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) ThrowSys("addPort: interface " + ifname, "if_nametoindex");

  if (existing_fd >= 0) {
    // A socket kept across a restart: frames that arrived meanwhile are queued in it.
    sockaddr_ll bound{};
    socklen_t len = sizeof bound;
    int vnet = 0;
    socklen_t vlen = sizeof vnet;
    if (getsockname(existing_fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0 || bound.sll_family != AF_PACKET ||
        bound.sll_ifindex != static_cast<int>(ifindex) || bound.sll_protocol != htons(ETH_P_ALL) ||
        getsockopt(existing_fd, SOL_PACKET, PACKET_VNET_HDR, &vnet, &vlen) != 0 || vnet != 1) {
      ThrowInvalid("addPort: fd " + std::to_string(existing_fd) + " is not a packet socket of " + ifname);
    }
    const int flags = fcntl(existing_fd, F_GETFL);
    if (flags < 0 || fcntl(existing_fd, F_SETFL, flags | O_NONBLOCK) != 0) ThrowSys("addPort: O_NONBLOCK", "fcntl");
    fcntl(existing_fd, F_SETFD, FD_CLOEXEC);
    InstallPort(id, ifindex, ifname, cfg, existing_fd);
    return;
  }

  // Protocol 0 at creation: the socket receives nothing until bound to the
  // device with ETH_P_ALL (no frames of other devices slip in).
  FdGuard fd(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) ThrowSys("addPort: socket(AF_PACKET)", "socket");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size());
  if (ioctl(fd.get(), SIOCGIFHWADDR, &ifr) != 0) {
    ThrowSys("addPort: SIOCGIFHWADDR " + ifname, "ioctl");
  }
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    ThrowInvalid("addPort: " + ifname + " is not an Ethernet device (veth or TAP)");
  }
  int one = 1;
  if (setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0) {
    ThrowSys("addPort: PACKET_IGNORE_OUTGOING", "setsockopt");
  }
  if (setsockopt(fd.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) {
    ThrowSys("addPort: PACKET_VNET_HDR", "setsockopt");
  }
  SetSocketBuffer(fd.get(), SO_RCVBUFFORCE, SO_RCVBUF, kSocketBuffer);
  SetSocketBuffer(fd.get(), SO_SNDBUFFORCE, SO_SNDBUF, kSocketBuffer);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
    ThrowSys("addPort: bind to " + ifname, "bind");
  }
  InstallPort(id, ifindex, ifname, cfg, fd.release());
}

void Engine::InstallPort(uint32_t id, unsigned ifindex, const std::string& ifname, const PortConfig& cfg, int fd) {
  auto port = std::make_shared<Port>();
  port->id = id;
  port->ifindex = static_cast<int>(ifindex);
  port->ifname = ifname;
  port->cfg = cfg;
  const double now = NowSeconds();
  port->allow_in.Set(cfg.allowance, now);
  port->allow_out.Set(cfg.allowance, now);
  port->fd = fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ports_[id] = port;
    if (hold_ports_) {
      held_ports_.push_back(id);
      return;
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, port->fd, &ev) != 0) {
    const int err = errno;
    std::lock_guard<std::mutex> lock(mu_);
    ports_.erase(id);
    ThrowSys("addPort: epoll_ctl", "epoll_ctl", err);
  }
}

void Engine::UpdatePort(uint32_t id, const PortConfig& cfg) {
  RequireOpen("updatePort");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(id);
  if (it == ports_.end()) ThrowInvalid("updatePort: no port " + std::to_string(id));
  Port& port = *it->second;
  // A changed allowance applies to the next frame, with full buckets.
  if (cfg.allowance != port.cfg.allowance) {
    const double now = NowSeconds();
    port.allow_in.Set(cfg.allowance, now);
    port.allow_out.Set(cfg.allowance, now);
  }
  port.cfg = cfg;
}

PortConfig Engine::GetPortConfig(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(id);
  if (it == ports_.end()) ThrowInvalid("updatePort: no port " + std::to_string(id));
  return it->second->cfg;
}

void Engine::HoldPorts() {
  RequireOpen("holdPorts");
  std::lock_guard<std::mutex> lock(mu_);
  hold_ports_ = true;
}

void Engine::ReleasePorts() {
  RequireOpen("releasePorts");
  std::lock_guard<std::mutex> lock(mu_);
  hold_ports_ = false;
  for (uint32_t id : held_ports_) {
    auto it = ports_.find(id);
    if (it == ports_.end()) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, it->second->fd, &ev) != 0) {
      const int err = errno;
      held_ports_.clear();
      ThrowSys("releasePorts: epoll_ctl", "epoll_ctl", err);
    }
  }
  held_ports_.clear();
}

int Engine::PortFd(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(id);
  return it == ports_.end() ? -1 : it->second->fd;
}

bool Engine::RemovePort(uint32_t id) {
  RequireOpen("removePort");
  std::shared_ptr<Port> port;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ports_.find(id);
    if (it == ports_.end()) return false;
    port = it->second;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, port->fd, nullptr);
    ports_.erase(it);
    // Its held frames go with it (the worker drops it from shaping_).
    port->held_in = HeldQueue();
    port->held_out = HeldQueue();
  }
  // The socket closes with the last reference (this one, or a send the
  // worker has queued).
  return true;
}

void Engine::SetRoute(const uint8_t mac[6], RouteKind kind, uint32_t id) {
  RequireOpen("setRoute");
  std::lock_guard<std::mutex> lock(mu_);
  routes_[MacKey(mac)] = Route{kind, id};
}

bool Engine::DeleteRoute(const uint8_t mac[6]) {
  RequireOpen("deleteRoute");
  std::lock_guard<std::mutex> lock(mu_);
  return routes_.erase(MacKey(mac)) != 0;
}

Endpoint Engine::ParseEndpoint(const std::string& host, uint16_t port) const {
  Endpoint ep;
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    if (family_ == AF_INET) {
      auto* s = reinterpret_cast<sockaddr_in*>(&ep.addr);
      s->sin_family = AF_INET;
      s->sin_addr = a4;
      s->sin_port = htons(port);
      ep.len = sizeof(sockaddr_in);
    } else {
      auto* s = reinterpret_cast<sockaddr_in6*>(&ep.addr);
      s->sin6_family = AF_INET6;
      s->sin6_addr.s6_addr[10] = s->sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(s->sin6_addr.s6_addr + 12, &a4, 4);
      s->sin6_port = htons(port);
      ep.len = sizeof(sockaddr_in6);
    }
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (family_ == AF_INET) {
      ThrowInvalid("host " + host + " is IPv6 but the engine is bound to an IPv4 address");
    }
    auto* s = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    s->sin6_family = AF_INET6;
    s->sin6_addr = a6;
    s->sin6_port = htons(port);
    ep.len = sizeof(sockaddr_in6);
  } else {
    ThrowInvalid("host \"" + host + "\" is not a numeric IPv4 or IPv6 address");
  }
  if (port == 0) ThrowInvalid("endpoint port must not be 0");
  return ep;
}

Engine::Peer& Engine::PeerRef(uint32_t id, const char* fn) {
  auto it = peers_.find(id);
  if (it == peers_.end()) ThrowInvalid(std::string(fn) + ": no peer " + std::to_string(id));
  return *it->second;
}

void Engine::AddPeer(uint32_t id, const Endpoint& ep) {
  RequireOpen("addPeer");
  std::lock_guard<std::mutex> lock(mu_);
  if (peers_.count(id)) ThrowInvalid("addPeer: peer " + std::to_string(id) + " already exists");
  const EpKey key = KeyOf(ep.addr);
  auto other = by_endpoint_.find(key);
  if (other != by_endpoint_.end()) {
    ThrowInvalid("addPeer: that endpoint is already peer " + std::to_string(other->second->id) + "'s");
  }
  auto p = std::make_unique<Peer>();
  p->id = id;
  p->ep = ep;
  p->key = key;
  by_endpoint_[key] = p.get();
  peers_[id] = std::move(p);
}

bool Engine::RemovePeer(uint32_t id) {
  RequireOpen("removePeer");
  std::unique_ptr<Peer> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return false;
    Peer& p = *it->second;
    for (Session* s : {p.current.get(), p.previous.get(), p.next.get()}) UnindexSession(s);
    by_endpoint_.erase(p.key);
    gone = std::move(it->second);
    peers_.erase(it);
  }
  return true;  // sessions freed (keys cleansed) with `gone`
}

void Engine::SetPeerEndpoint(uint32_t id, const Endpoint& ep) {
  RequireOpen("setPeerEndpoint");
  std::lock_guard<std::mutex> lock(mu_);
  Peer& p = PeerRef(id, "setPeerEndpoint");
  const EpKey key = KeyOf(ep.addr);
  auto other = by_endpoint_.find(key);
  if (other != by_endpoint_.end() && other->second != &p) {
    ThrowInvalid("setPeerEndpoint: that endpoint is already peer " +
                 std::to_string(other->second->id) + "'s");
  }
  by_endpoint_.erase(p.key);
  p.ep = ep;
  p.key = key;
  by_endpoint_[key] = &p;
}

void Engine::SetPlaintext(uint32_t id, bool on) {
  RequireOpen("setPlaintext");
  std::lock_guard<std::mutex> lock(mu_);
  PeerRef(id, "setPlaintext").plaintext = on;
}

void Engine::IndexSession(Peer& p, Session* s) {
  by_index_[s->local_index()] = IndexEntry{&p, s};
}

void Engine::UnindexSession(Session* s) {
  if (s == nullptr) return;
  auto it = by_index_.find(s->local_index());
  if (it != by_index_.end() && it->second.session == s) by_index_.erase(it);
}

void Engine::SetSession(uint32_t id, const SessionKeys& keys, bool pending, bool csum_partial) {
  RequireOpen("setSession");
  std::string err;
  // Keyed outside the lock (a few microseconds of key schedule).
  std::unique_ptr<Session> s = Session::Create(keys.local_index, keys.remote_index,
                                               keys.send_key, keys.recv_key,
                                               ClockMs(CLOCK_MONOTONIC_COARSE), &err);
  if (!s) ThrowInvalid("setSession: " + err);
  s->peer_csum_partial = csum_partial;
  std::unique_ptr<Session> drop1, drop2;  // freed after unlocking
  std::lock_guard<std::mutex> lock(mu_);
  Peer& p = PeerRef(id, "setSession");
  // The sessions this call evicts. A new current session keeps an unconfirmed
  // pending one as previous rather than the old current (as WireGuard does):
  // when both sides rekeyed at once, the peer may already be sending on the
  // session we only answered, and dropping it would lose those messages.
  Session* evict_a = pending ? p.next.get() : p.previous.get();
  Session* evict_b = pending ? nullptr : (p.next ? p.current.get() : nullptr);
  auto used = by_index_.find(keys.local_index);
  if (used != by_index_.end() && used->second.session != evict_a &&
      used->second.session != evict_b) {
    ThrowInvalid("setSession: localIndex " + std::to_string(keys.local_index) +
                 " is in use by a session of peer " + std::to_string(used->second.peer->id));
  }
  UnindexSession(evict_a);
  UnindexSession(evict_b);
  if (pending) {
    drop1 = std::move(p.next);
    p.next = std::move(s);
    IndexSession(p, p.next.get());
  } else {
    drop1 = std::move(p.previous);
    if (p.next) {
      drop2 = std::move(p.current);
      p.previous = std::move(p.next);
    } else {
      p.previous = std::move(p.current);
    }
    p.current = std::move(s);
    IndexSession(p, p.current.get());
  }
}

bool Engine::SendKeepalive(uint32_t id) {
  RequireOpen("sendKeepalive");
  uint8_t msg[kDataOverhead];
  Endpoint ep;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& p = PeerRef(id, "sendKeepalive");
    Session* s = p.current.get();
    static const uint8_t kNothing = 0;
    if (p.plaintext || s == nullptr || !s->Seal(&kNothing, 0, msg)) return false;
    ep = p.ep;
  }
  SendUnderlay(ep, msg, sizeof msg);
  return true;
}

void Engine::ClearSessions(uint32_t id) {
  RequireOpen("clearSessions");
  std::unique_ptr<Session> a, b, c;
  std::lock_guard<std::mutex> lock(mu_);
  Peer& p = PeerRef(id, "clearSessions");
  for (Session* s : {p.current.get(), p.previous.get(), p.next.get()}) UnindexSession(s);
  a = std::move(p.current);
  b = std::move(p.previous);
  c = std::move(p.next);
}

void Engine::SetRekeyLimits(uint64_t packets, uint64_t seconds) {
  RequireOpen("setRekeyLimits");
  std::lock_guard<std::mutex> lock(mu_);
  rekey_packets_ = packets;
  rekey_ms_ = static_cast<int64_t>(seconds) * 1000;
}

void Engine::SendFrame(uint32_t port_id, const uint8_t* frame, size_t len) {
  RequireOpen("sendFrame");
  std::shared_ptr<Port> port;
  uint32_t mtu;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ports_.find(port_id);
    if (it == ports_.end()) ThrowInvalid("sendFrame: no port " + std::to_string(port_id));
    port = it->second;
    mtu = port->cfg.mtu;
  }
  if (len < kMinFrame || len > mtu + kEthHeader) {
    throw VpcError{VpcError::kRange,
                   "sendFrame: frame length " + std::to_string(len) + " is not in [14, mtu + 14 = " +
                       std::to_string(mtu + kEthHeader) + "]",
                   0, nullptr};
  }
  uint8_t vnet[kVnetHdrBytes] = {0};
  iovec iov[2] = {{vnet, sizeof vnet}, {const_cast<uint8_t*>(frame), len}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  ssize_t r;
  do {
    r = sendmsg(port->fd, &msg, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowSys("sendFrame to " + port->ifname, "sendmsg");
  port->c.js_tx_frames.fetch_add(1, std::memory_order_relaxed);
  port->c.js_tx_bytes.fetch_add(len, std::memory_order_relaxed);
}

void Engine::SendUnderlay(const Endpoint& ep, const uint8_t* data, size_t len) {
  RequireOpen("sendUnderlay");
  ssize_t r;
  do {
    r = sendto(udp_fd_, data, len, MSG_DONTWAIT,
               reinterpret_cast<const sockaddr*>(&ep.addr), ep.len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowSys("sendUnderlay", "sendto");
}

void Engine::SetSecurity(uint32_t port_id, std::shared_ptr<const SgTable> table, const CtConfig& cfg,
                         std::shared_ptr<const NaclTable> nacl) {
  RequireOpen("setSecurity");
  std::unique_ptr<Conntrack> gone;  // freed after unlocking
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(port_id);
  if (it == ports_.end()) ThrowInvalid("setSecurity: no port " + std::to_string(port_id));
  Port& p = *it->second;
  p.nacl.swap(nacl);  // the old one is freed after unlocking
  p.sg = std::move(table);
  if (!p.sg) {
    gone = std::move(p.ct);
  } else if (p.ct) {
    p.ct->Configure(cfg);
  } else {
    p.ct = std::make_unique<Conntrack>(cfg);
  }
}

void Engine::SetFlowLog(uint32_t port_id, size_t max_keys) {
  RequireOpen("setFlowLog");
  std::unique_ptr<FlowLogTable> gone;  // freed after unlocking
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(port_id);
  if (it == ports_.end()) ThrowInvalid("setFlowLog: no port " + std::to_string(port_id));
  Port& p = *it->second;
  if (max_keys == 0) {
    gone = std::move(p.flowlog);
  } else if (p.flowlog) {
    p.flowlog->set_max(max_keys);
  } else {
    p.flowlog = std::make_unique<FlowLogTable>(max_keys);
  }
}

void Engine::TakeFlowLog(uint32_t port_id, FlowLogMap* out, uint64_t* dropped, int64_t* mono_ms) {
  RequireOpen("takeFlowLog");
  *dropped = 0;
  *mono_ms = ClockMs(CLOCK_MONOTONIC_COARSE);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(port_id);
  if (it == ports_.end()) ThrowInvalid("takeFlowLog: no port " + std::to_string(port_id));
  if (it->second->flowlog) it->second->flowlog->Take(out, dropped);
}

size_t Engine::FlushConntrack(uint32_t port_id) {
  RequireOpen("flushConntrack");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(port_id);
  if (it == ports_.end()) ThrowInvalid("flushConntrack: no port " + std::to_string(port_id));
  return it->second->ct ? it->second->ct->Flush() : 0;
}

std::vector<CtFlowInfo> Engine::ListConntrack(uint32_t port_id, size_t max, size_t* count, uint32_t* limit) {
  RequireOpen("conntrack");
  std::vector<CtFlowInfo> out;
  const int64_t now = ClockMs(CLOCK_MONOTONIC_COARSE);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(port_id);
  if (it == ports_.end()) ThrowInvalid("conntrack: no port " + std::to_string(port_id));
  const Conntrack* ct = it->second->ct.get();
  *count = ct ? ct->size() : 0;
  *limit = ct ? ct->config().max_flows : 0;
  if (ct) {
    out.reserve(std::min(max, ct->size()));
    ct->List(&out, max, now);
  }
  return out;
}

EngineStats Engine::Stats() {
  EngineStats st{};
  std::lock_guard<std::mutex> lock(mu_);
  st.ports.reserve(ports_.size());
  for (auto& [id, p] : ports_) {
    PortCounters& c = p->c;
    tpacket_stats ps{};
    socklen_t pslen = sizeof ps;
    if (p->fd >= 0 && getsockopt(p->fd, SOL_PACKET, PACKET_STATISTICS, &ps, &pslen) == 0) {
      c.queue_full.fetch_add(ps.tp_drops, std::memory_order_relaxed);
    }
    st.ports.push_back({id, PortStats{
        c.rx_frames.Get(), c.rx_bytes.Get(),
        c.tx_frames.Get() + c.js_tx_frames.load(std::memory_order_relaxed),
        c.tx_bytes.Get() + c.js_tx_bytes.load(std::memory_order_relaxed),
        c.spoofed.Get(), c.no_route.Get(), c.oversize.Get(), c.punted.Get(),
        c.punt_overflow.Get(), c.filtered.Get(), c.invalid.Get(), c.tx_errors.Get(),
        c.queue_full.load(std::memory_order_relaxed), c.sg_rejected.Get(), c.conntrack_full.Get(),
        p->ct ? p->ct->size() : 0, p->ct ? p->ct->config().max_flows : 0, c.nacl_rejected.Get(),
        c.bw_in_exceeded.Get(), c.bw_out_exceeded.Get(), c.pps_exceeded.Get()}});
  }
  st.peers.reserve(peers_.size());
  for (auto& [id, p] : peers_) {
    const PeerCounters& c = p->c;
    st.peers.push_back({id, PeerStats{
        c.tx_packets.Get(), c.tx_bytes.Get(), c.rx_packets.Get(), c.rx_bytes.Get(),
        c.bad_tag.Get(), c.replay.Get(), c.no_session.Get(), c.not_plaintext.Get(),
        c.no_route.Get(), c.spoofed.Get(),
        c.last_rx_ms.load(std::memory_order_relaxed),
        static_cast<uint32_t>((p->current ? 1 : 0) + (p->previous ? 1 : 0) + (p->next ? 1 : 0))}});
  }
  st.underlay = UnderlayStats{unknown_peer_.Get(), malformed_.Get(), udp_punted_.Get(),
                              udp_punt_overflow_.Get(), udp_tx_errors_.Get()};
  st.worker = WorkerStats{polls_won_.Get(), polls_lost_.Get()};
  return st;
}

std::deque<ControlEvent> Engine::TakeEvents() {
  std::deque<ControlEvent> out;
  std::lock_guard<std::mutex> lock(ev_mu_);
  out.swap(events_);
  notify_pending_ = false;
  return out;
}

// ---------------------------------------------------------------------------
// Worker.

bool Engine::Punt(ControlEvent&& ev) {
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(ev_mu_);
    if (events_.size() >= kMaxQueuedEvents) return false;
    events_.push_back(std::move(ev));
    if (!notify_pending_) notify = notify_pending_ = true;
  }
  if (notify && notify_) notify_();
  return true;
}

namespace {

// The kernel's struct sched_attr (glibc has no wrapper before 2.41).
struct SchedAttr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
  uint32_t util_min, util_max;
};

// Asks the scheduler for a short slice for the calling (worker) thread, its
// policy and nice value unchanged. Best effort: kernels before 6.12 ignore
// the slice of a fair-class thread, and a refusal changes nothing.
void RequestShortSlice() {
  SchedAttr a{};
  if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0 || a.policy != SCHED_OTHER) return;
  a.size = sizeof a;
  a.flags = 0;
  a.runtime = kWorkerSliceNs;
  syscall(SYS_sched_setattr, 0, &a, 0);
}

}  // namespace

// The next events: at once if any are ready; else, while the PollWindow is
// open, by polling (yielding the core between checks, so that a runnable
// guest on a loaded machine runs instead of a spinning worker); else by
// sleeping in epoll_wait. Why poll at all: vpc_poll.h.
int Engine::WaitEvents(epoll_event* evs) {
  if (poll_.max() <= 0) return epoll_wait(epfd_, evs, kBatch, -1);
  int n = epoll_wait(epfd_, evs, kBatch, 0);
  if (n != 0) return n;
  const double idle_from = NowSeconds();
  const double window = poll_.window();
  double now = idle_from;
  while (now - idle_from < window) {
    sched_yield();
    n = epoll_wait(epfd_, evs, kBatch, 0);
    now = NowSeconds();
    if (n != 0) break;
  }
  if (n == 0) {
    n = epoll_wait(epfd_, evs, kBatch, -1);
    now = NowSeconds();
  }
  if (n > 0) {
    const PollWindow::Outcome o = poll_.Idle(now - idle_from);
    if (o == PollWindow::kWon) polls_won_.Add();
    if (o == PollWindow::kLost) polls_lost_.Add();
  }
  return n;
}

void Engine::Run() {
  RequestShortSlice();
  epoll_event evs[kBatch];
  while (!stop_.load(std::memory_order_acquire)) {
    const int n = WaitEvents(evs);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EBADF etc.: cannot happen while the engine is open
    }
    for (int i = 0; i < n && !stop_.load(std::memory_order_relaxed); ++i) {
      const uint64_t tag = evs[i].data.u64;
      if (tag == kWakeTag) {
        uint64_t v;
        ssize_t r = read(wakefd_, &v, sizeof v);
        (void)r;
      } else if (tag == kTimerTag) {
        ReleaseHeld();
      } else if (tag == kUdpTag) {
        if (evs[i].events & EPOLLERR) {
          // A pending socket error (e.g. an ICMP error some kernels report
          // on unconnected sockets): reading SO_ERROR clears it, so that the
          // level-triggered epoll does not spin. Nothing else to do.
          int err = 0;
          socklen_t elen = sizeof err;
          getsockopt(udp_fd_, SOL_SOCKET, SO_ERROR, &err, &elen);
        }
        HandleUnderlay();
      } else {
        HandlePort(static_cast<uint32_t>(tag), evs[i].events);
      }
    }
  }
}

void Engine::ReportPortError(Port& port, int err) {
  if (err == port.last_err) return;
  port.last_err = err;
  ControlEvent ev;
  ev.type = ControlEvent::kPortError;
  ev.id = port.id;
  ev.err = err;
  Punt(std::move(ev));
}

void Engine::HandlePort(uint32_t id, uint32_t events) {
  std::shared_ptr<Port> port;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ports_.find(id);
    if (it == ports_.end()) return;
    port = it->second;
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(port->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err != 0) {
      ReportPortError(*port, err);
    }
  }
  Buffers& b = *b_;
  for (int round = 0; round < kRounds; ++round) {
    const int n = recvmmsg(port->fd, b.port_msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) ReportPortError(*port, errno);
      break;
    }
    port->last_err = 0;
    now_mono_ms_ = ClockMs(CLOCK_MONOTONIC_COARSE);
    {
      std::unique_lock<std::mutex> lk(mu_);
      OpenBatch();
      for (int i = 0; i < n; ++i) {
        ProcessGuestFrame(port, static_cast<uint8_t*>(b.port_iov[i].iov_base),
                          b.port_msgs[i].msg_len,
                          (b.port_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, lk);
      }
      CloseBatch();
    }
    FlushAll();
    if (n < static_cast<int>(kBatch)) break;
  }
}

void Engine::PuntFrame(Port& port, PuntReason reason, const uint8_t* f, size_t len) {
  ControlEvent ev;
  ev.type = ControlEvent::kFrame;
  ev.id = port.id;
  ev.reason = PuntReasonName(reason);
  ev.data.assign(f, f + len);
  if (Punt(std::move(ev))) {
    port.c.punted.Add();
  } else {
    port.c.punt_overflow.Add();
  }
}

// One fine clock read per batch of frames (a batch is processed within tens of µs; the buckets
// are 0.3 s deep); outside a batch, a read per call.
double Engine::AllowanceNow() {
  if (!batch_open_) return NowSeconds();
  if (batch_now_ == 0) batch_now_ = NowSeconds();
  return batch_now_;
}

bool Engine::PassAllowance(const std::shared_ptr<Port>& sp, bool in, size_t wire, size_t segments,
                           const uint8_t* f, size_t len, const virtio_net_hdr& h) {
  Port& port = *sp;
  Allowance& a = in ? port.allow_in : port.allow_out;
  if (!a.limited()) return true;
  HeldQueue& q = in ? port.held_in : port.held_out;
  const double now = AllowanceNow();
  const bool room = q.frames.size() < kMaxHeldFrames && q.bytes + len <= kMaxHeldBytes;
  const Allowance::Decision d = a.Schedule(static_cast<double>(wire), static_cast<double>(segments), now,
                                           room ? a.limits().queue : 0);
  if (d.over == Allowance::kBandwidth) (in ? port.c.bw_in_exceeded : port.c.bw_out_exceeded).Add();
  if (d.over == Allowance::kPackets) port.c.pps_exceeded.Add();
  if (d.drop) return false;
  if (d.at <= now && q.frames.empty()) return true;
  // Within the allowance but behind held frames, or over it: it waits (in order).
  Hold(sp, q, d.at, f, len, h);
  return false;
}

void Engine::Hold(const std::shared_ptr<Port>& port, HeldQueue& q, double at, const uint8_t* f, size_t len,
                  const virtio_net_hdr& h) {
  Held e;
  e.at = q.frames.empty() ? at : std::max(at, q.frames.back().at);
  std::memcpy(e.vnet, &h, kVnetHdrBytes);
  e.frame.assign(f, f + len);
  q.bytes += len;
  q.frames.push_back(std::move(e));
  if (!port->shaping) {
    port->shaping = true;
    shaping_.push_back(port);
  }
  ArmTimer(q.frames.back().at);
}

void Engine::ArmTimer(double at) {
  if (timer_at_ != 0 && timer_at_ <= at) return;
  timer_at_ = at;
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(at);
  its.it_value.tv_nsec = static_cast<long>((at - static_cast<double>(its.it_value.tv_sec)) * 1e9);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;  // 0 would disarm
  timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void Engine::ReleaseHeld() {
  uint64_t expirations;
  ssize_t r = read(timerfd_, &expirations, sizeof expirations);
  (void)r;
  now_mono_ms_ = ClockMs(CLOCK_MONOTONIC_COARSE);
  {
    std::unique_lock<std::mutex> lk(mu_);
    timer_at_ = 0;
    const double due = NowSeconds() + kReleaseEarly;
    double next = 0;
    // By index: a frame released out of one port may be held by another's
    // allowance (shaping_ grows), and EnsureTxRoom unlocks mu_.
    for (size_t i = 0; i < shaping_.size();) {
      const std::shared_ptr<Port> port = shaping_[i];
      for (const bool in : {false, true}) {
        HeldQueue& q = in ? port->held_in : port->held_out;
        while (!q.frames.empty() && q.frames.front().at <= due) {
          EnsureTxRoom(lk);
          if (q.frames.empty()) break;  // the port went while unlocked
          released_.push_back(std::move(q.frames.front()));
          q.frames.pop_front();
          Held& e = released_.back();
          q.bytes -= e.frame.size();
          virtio_net_hdr h;
          std::memcpy(&h, e.vnet, kVnetHdrBytes);
          uint8_t* f = e.frame.data();
          const size_t len = e.frame.size();
          if (!in) {
            ForwardGuestFrame(port, f, len, h, lk);
          } else if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE && h.flags == 0) {
            QueueFromPeer(port, f, len, h);  // coalesced like frames from a peer
          } else {
            QueueLocal(port, f, len, h);
          }
        }
      }
      if (port->held_in.frames.empty() && port->held_out.frames.empty()) {
        port->shaping = false;
        shaping_[i] = shaping_.back();
        shaping_.pop_back();
        continue;
      }
      for (const HeldQueue* q : {&port->held_in, &port->held_out}) {
        if (!q->frames.empty() && (next == 0 || q->frames.front().at < next)) next = q->frames.front().at;
      }
      ++i;
    }
    if (next != 0) ArmTimer(next);
  }
  FlushAll();
  released_.clear();
}

bool Engine::ToControlPlane(const uint8_t* f) const {
  auto rt = routes_.find(MacKey(f));
  return rt != routes_.end() && rt->second.kind == RouteKind::kControl;
}

bool Engine::PassSecurity(Port& port, int dir, const uint8_t* f, size_t len, SgPacket& pkt) {
  if (!port.sg && !port.nacl && !port.flowlog) return true;
  if (!pkt.parsed) {
    pkt.parsed = true;
    pkt.result = ParseFlowPacket(f, len, &pkt.p);
  }
  if (pkt.result == FlowParse::kNotIpv4) return true;  // ARP and DHCP are the control plane's
  if (pkt.result == FlowParse::kInvalid) {
    port.c.invalid.Add();
    return false;
  }
  const bool pass = Judge(port, dir, len, pkt.p);
  // The flow log counts IP bytes (AWS's), whatever the verdict.
  if (port.flowlog) port.flowlog->Add(pkt.p, pass, len - kEthHeader, now_mono_ms_);
  return pass;
}

bool Engine::Judge(Port& port, int dir, size_t len, const FlowPacket& p) {
  // The subnet's ACL first (stateless: every packet; a non-first fragment
  // carries no ports and passes, as in the security groups).
  const uint32_t peer = dir == kSgDirIngress ? p.src : p.dst;
  if (port.nacl && !p.fragment && !port.nacl->Allows(dir, p.proto, peer, RulePort(p))) {
    port.c.nacl_rejected.Add();
    return false;
  }
  if (!port.sg) return true;
  switch (port.ct->Process(p, dir, *port.sg, now_mono_ms_, len)) {
    case Conntrack::Verdict::kAllow:
      return true;
    case Conntrack::Verdict::kDeny:
      port.c.sg_rejected.Add();
      return false;
    case Conntrack::Verdict::kFull:
      port.c.conntrack_full.Add();
      return false;
  }
  return false;
}

void Engine::ProcessGuestFrame(const std::shared_ptr<Port>& port, uint8_t* buf,
                               size_t msg_len, bool truncated,
                               std::unique_lock<std::mutex>& lk) {
  Port& p = *port;
  if (msg_len < kVnetHdrBytes) {
    p.c.invalid.Add();
    return;
  }
  virtio_net_hdr h;
  std::memcpy(&h, buf, kVnetHdrBytes);
  uint8_t* f = buf + kVnetHdrBytes;
  const size_t len = msg_len - kVnetHdrBytes;
  p.c.rx_frames.Add();
  p.c.rx_bytes.Add(len);
  if (truncated) {
    p.c.oversize.Add();
    return;
  }
  if (len < kMinFrame) {
    p.c.invalid.Add();
    return;
  }
  const size_t max = p.cfg.mtu + kEthHeader;
  const bool gso = h.gso_type != VIRTIO_NET_HDR_GSO_NONE;
  // What the frame is on the wire: segments and bytes (headers repeated).
  size_t segments = 1, wire = len;
  if (gso) {
    const size_t seg = GsoSegmentFrameLen(f, len, h);
    if (seg == 0) {
      p.c.invalid.Add();
      return;
    }
    if (seg > max) {
      p.c.oversize.Add();
      return;
    }
    WireSize(len, seg, h.gso_size, &segments, &wire);
  } else if (len > max) {
    p.c.oversize.Add();
    return;
  }
  PuntReason reason = PuntReason::kArp;
  switch (ClassifyGuestFrame(f, len, p.cfg.policy, &reason)) {
    case GuestVerdict::kSpoofed:
      p.c.spoofed.Add();
      return;
    case GuestVerdict::kFiltered:
      p.c.filtered.Add();
      return;
    case GuestVerdict::kInvalid:
      p.c.invalid.Add();
      return;
    case GuestVerdict::kPunt:
      if (gso || ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !CompleteChecksum(f, len, h))) {
        p.c.invalid.Add();
        return;
      }
      PuntFrame(p, reason, f, len);
      return;
    case GuestVerdict::kForward:
      break;
  }
  // Frames to the gateway (the control plane's) are not charged, as its answers are not.
  if (p.allow_out.limited() && !ToControlPlane(f) && !PassAllowance(port, false, wire, segments, f, len, h)) return;
  EnsureTxRoom(lk);
  ForwardGuestFrame(port, f, len, h, lk);
}

namespace {
struct SegCtx {
  Engine* engine;
  void* src;  // Engine::Port*
  std::unique_lock<std::mutex>* lk;
};
}  // namespace

void Engine::ForwardGuestFrame(const std::shared_ptr<Port>& src, uint8_t* f, size_t len,
                               const virtio_net_hdr& h, std::unique_lock<std::mutex>& lk) {
  const bool gso = h.gso_type != VIRTIO_NET_HDR_GSO_NONE;
  const bool needs_csum = (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0;
  auto rt = routes_.find(MacKey(f));
  if (rt == routes_.end()) {
    src->c.no_route.Add();
    return;
  }
  const Route r = rt->second;
  SgPacket pkt;
  switch (r.kind) {
    case RouteKind::kControl:
      if (gso || (needs_csum && !CompleteChecksum(f, len, h))) {
        src->c.invalid.Add();
        return;
      }
      PuntFrame(*src, PuntReason::kRoute, f, len);
      return;
    case RouteKind::kPort: {
      auto pt = ports_.find(r.id);
      if (pt == ports_.end()) {
        src->c.no_route.Add();
        return;
      }
      Port& dst = *pt->second;
      const size_t wire = gso ? GsoSegmentFrameLen(f, len, h) : len;
      if (wire > dst.cfg.mtu + kEthHeader) {
        dst.c.oversize.Add();
        return;
      }
      if (!PassSecurity(*src, kSgDirEgress, f, len, pkt) || !PassSecurity(dst, kSgDirIngress, f, len, pkt)) return;
      if (dst.allow_in.limited()) {
        size_t segments = 1, total = len;
        if (gso) WireSize(len, wire, h.gso_size, &segments, &total);
        if (!PassAllowance(pt->second, true, total, segments, f, len, h)) return;
      }
      QueueLocal(pt->second, f, len, h);
      return;
    }
    case RouteKind::kPeer: {
      auto pe = peers_.find(r.id);
      if (pe == peers_.end()) {
        src->c.no_route.Add();
        return;
      }
      if (!PassSecurity(*src, kSgDirEgress, f, len, pkt)) return;
      // Segments leave with the pseudo-header sum only: SendToPeer
      // completes them for a peer that does not take the partial mark.
      if (gso) {
        SegCtx ctx{this, src.get(), &lk};
        if (SegmentGso(f, len, h, true, b_->scratch.get(), &Engine::SegmentToPeer, &ctx) < 0) {
          src->c.invalid.Add();
        }
        return;
      }
      if (needs_csum) {
        uint16_t start, offset;
        if (TransportCsumOffsets(f, len, &start, &offset) && start == h.csum_start &&
            offset == h.csum_offset) {
          SendToPeer(*pe->second, f, len, true);
          return;
        }
        if (!CompleteChecksum(f, len, h)) {
          src->c.invalid.Add();
          return;
        }
      }
      SendToPeer(*pe->second, f, len);
      return;
    }
  }
}

void Engine::QueueLocal(const std::shared_ptr<Port>& dst, uint8_t* f, size_t len, const virtio_net_hdr& h) {
  PortTx tx;
  tx.port = dst;
  std::memset(tx.vnet, 0, sizeof tx.vnet);
  virtio_net_hdr out = h;
  out.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
  std::memcpy(tx.vnet, &out, kVnetHdrBytes);
  tx.data = f;
  tx.len = len;
  tx.total = len;
  port_tx_.push_back(std::move(tx));
}

void Engine::SegmentToPeer(void* ctx, uint8_t* seg, size_t len) {
  auto* c = static_cast<SegCtx*>(ctx);
  Engine* e = c->engine;
  Port* src = static_cast<Port*>(c->src);
  // Room for this segment; the tables may change while unlocked, so the
  // destination is looked up again for every segment.
  e->EnsureTxRoom(*c->lk);
  auto rt = e->routes_.find(MacKey(seg));
  if (rt == e->routes_.end() || rt->second.kind != RouteKind::kPeer) {
    src->c.no_route.Add();
    return;
  }
  auto pe = e->peers_.find(rt->second.id);
  if (pe == e->peers_.end()) {
    src->c.no_route.Add();
    return;
  }
  e->SendToPeer(*pe->second, seg, len, true);
}

void Engine::MaybeSignalRekey(Peer& peer, Session& s) {
  if (s.rekey_signalled) return;
  const char* reason = nullptr;
  if (s.send_counter() >= rekey_packets_) {
    reason = "packets";
  } else if (now_mono_ms_ - s.created_ms() >= rekey_ms_) {
    reason = "age";
  }
  if (reason == nullptr) return;
  ControlEvent ev;
  ev.type = ControlEvent::kRekeyNeeded;
  ev.id = peer.id;
  ev.local_index = s.local_index();
  ev.reason = reason;
  // Only marked once queued, so a full queue retries on the next send.
  if (Punt(std::move(ev))) s.rekey_signalled = true;
}

void Engine::SendToPeer(Peer& peer, uint8_t* f, size_t len, bool csum_partial) {
  const unsigned i = udp_tx_count_;
  Session* const cur = peer.current.get();
  if (csum_partial && (peer.plaintext || cur == nullptr || !cur->peer_csum_partial)) {
    // The mark is authenticated only inside a data message, and an older
    // peer drops marked ones: complete the checksum instead.
    virtio_net_hdr h{};
    if (!TransportCsumOffsets(f, len, &h.csum_start, &h.csum_offset) || !CompleteChecksum(f, len, h)) return;
    csum_partial = false;
  }
  uint8_t* slot = b_->UdpTxSlot(i);
  size_t dlen;
  if (peer.plaintext) {
    slot[0] = kMsgPlaintext;
    slot[1] = slot[2] = slot[3] = 0;
    std::memcpy(slot + kPlaintextHeaderBytes, f, len);
    dlen = len + kPlaintextHeaderBytes;
  } else {
    Session* s = peer.current.get();
    if (s == nullptr) {
      peer.c.no_session.Add();
      return;
    }
    if (!s->Seal(f, len, slot, csum_partial ? kDataFlagCsumPartial : 0)) {
      peer.c.no_session.Add();
      if (s->exhausted() && !s->exhausted_signalled) {
        ControlEvent ev;
        ev.type = ControlEvent::kRekeyNeeded;
        ev.id = peer.id;
        ev.local_index = s->local_index();
        ev.reason = "exhausted";
        if (Punt(std::move(ev))) s->exhausted_signalled = true;
      }
      return;
    }
    dlen = len + kDataOverhead;
    MaybeSignalRekey(peer, *s);
  }
  b_->udp_tx_iov[i].iov_len = dlen;
  std::memcpy(&b_->udp_tx_to[i], &peer.ep.addr, peer.ep.len);
  b_->udp_tx_msgs[i].msg_hdr.msg_namelen = peer.ep.len;
  udp_tx_count_ = i + 1;
  peer.c.tx_packets.Add();
  peer.c.tx_bytes.Add(dlen);
}

// Sends the queued datagrams. Runs of consecutive datagrams to the same
// destination, all of one size but the last (which may be shorter), go out
// as one UDP GSO send (UDP_SEGMENT): the segments of one guest TCP
// super-frame cross the sending stack as one packet. If the kernel or the
// route refuses GSO (EIO without checksum offload), the engine falls back to
// one datagram per message for good.
void Engine::FlushUdpTx() {
  Buffers& b = *b_;
  const unsigned n = udp_tx_count_;
  udp_tx_count_ = 0;
  unsigned m = 0;
  for (unsigned i = 0; i < n;) {
    const size_t seg = b.udp_tx_iov[i].iov_len;
    const socklen_t nlen = b.udp_tx_msgs[i].msg_hdr.msg_namelen;
    unsigned j = i + 1;
    if (udp_gso_) {
      size_t total = seg;
      while (j < n && j - i < kMaxGsoSegments && b.udp_tx_iov[j].iov_len <= seg &&
             total + b.udp_tx_iov[j].iov_len <= kMaxGsoBytes &&
             b.udp_tx_msgs[j].msg_hdr.msg_namelen == nlen &&
             std::memcmp(&b.udp_tx_to[j], &b.udp_tx_to[i], nlen) == 0) {
        total += b.udp_tx_iov[j].iov_len;
        ++j;
        if (b.udp_tx_iov[j - 1].iov_len < seg) break;  // a short one ends a run
      }
    }
    msghdr& h = b.udp_send_msgs[m].msg_hdr;
    h.msg_name = &b.udp_tx_to[i];
    h.msg_namelen = nlen;
    h.msg_iov = &b.udp_tx_iov[i];
    h.msg_iovlen = j - i;
    if (j - i > 1) {
      h.msg_control = b.udp_send_ctrl[m];
      h.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t gso = static_cast<uint16_t>(seg);
      std::memcpy(CMSG_DATA(c), &gso, sizeof gso);
    } else {
      h.msg_control = nullptr;
      h.msg_controllen = 0;
    }
    b.udp_send_first[m] = i;
    b.udp_send_count[m] = j - i;
    ++m;
    i = j;
  }
  unsigned k = 0;
  while (k < m) {
    const int r = sendmmsg(udp_fd_, b.udp_send_msgs + k, m - k, MSG_DONTWAIT);
    if (r > 0) {
      k += static_cast<unsigned>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    const int err = r < 0 ? errno : EIO;
    const unsigned first = b.udp_send_first[k], cnt = b.udp_send_count[k];
    if (cnt > 1 && (err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT)) {
      // No GSO on this path: send this run one datagram at a time, and
      // never try GSO again.
      udp_gso_ = false;
      unsigned d = 0;
      while (d < cnt) {
        const int r2 = sendmmsg(udp_fd_, b.udp_tx_msgs + first + d, cnt - d, MSG_DONTWAIT);
        if (r2 > 0) {
          d += static_cast<unsigned>(r2);
        } else if (r2 < 0 && errno == EINTR) {
          continue;
        } else {
          udp_tx_errors_.Add();
          ++d;
        }
      }
    } else {
      udp_tx_errors_.Add(cnt);  // these datagrams are dropped
    }
    ++k;
  }
}

void Engine::FlushPortTx() {
  const size_t n = port_tx_.size();
  Buffers& b = *b_;
  // Finish coalesced frames and lay out every frame's iovecs:
  // [virtio_net_hdr][frame][appended payloads...].
  port_tx_iov_.clear();
  for (size_t i = 0; i < n; ++i) {
    PortTx& e = port_tx_[i];
    if (e.extra_count > 0) {
      virtio_net_hdr h{};
      FinishTcpSuperFrame(e.data, e.tcp, e.total, static_cast<uint16_t>(e.tcp.payload), e.extra_flags, &h);
      std::memcpy(e.vnet, &h, kVnetHdrBytes);
    }
    port_tx_iov_.push_back({e.vnet, kVnetHdrBytes});
    port_tx_iov_.push_back({e.data, e.len});
    for (uint32_t k = 0; k < e.extra_count; ++k) port_tx_iov_.push_back(merge_iov_[e.extra_first + k]);
  }
  size_t iov_at = 0;
  size_t i = 0;
  while (i < n) {
    // A run of sends to the same port (at most kBatch): one sendmmsg.
    Port& port = *port_tx_[i].port;
    size_t j = i;
    while (j < n && j - i < kBatch && port_tx_[j].port.get() == &port) {
      msghdr& h = b.port_tx_msgs[j - i].msg_hdr;
      h.msg_iov = &port_tx_iov_[iov_at];
      h.msg_iovlen = 2 + port_tx_[j].extra_count;
      iov_at += h.msg_iovlen;
      ++j;
    }
    const unsigned cnt = static_cast<unsigned>(j - i);
    unsigned done = 0;
    while (done < cnt) {
      const int r = port.fd >= 0 ? sendmmsg(port.fd, b.port_tx_msgs + done, cnt - done, MSG_DONTWAIT) : -1;
      if (r > 0) {
        for (int k = 0; k < r; ++k) {
          const PortTx& e = port_tx_[i + done + k];
          port.c.tx_frames.Add(1 + e.extra_count);
          port.c.tx_bytes.Add(e.total + static_cast<size_t>(e.extra_count) * e.tcp.hdr);
        }
        done += static_cast<unsigned>(r);
      } else if (r < 0 && errno == EINTR) {
        continue;
      } else {
        port.c.tx_errors.Add(1 + port_tx_[i + done].extra_count);
        ++done;
      }
    }
    i = j;
  }
  port_tx_.clear();
  merge_iov_.clear();
}

Engine::Peer* Engine::PeerByEndpoint(const sockaddr_storage& from) {
  auto it = by_endpoint_.find(KeyOf(from));
  return it == by_endpoint_.end() ? nullptr : it->second;
}

void Engine::HandleUnderlay() {
  Buffers& b = *b_;
  for (int round = 0; round < kRounds; ++round) {
    for (unsigned i = 0; i < kBatch; ++i) {
      b.udp_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      b.udp_msgs[i].msg_hdr.msg_control = udp_gro_ ? b.udp_ctrl[i] : nullptr;
      b.udp_msgs[i].msg_hdr.msg_controllen = udp_gro_ ? sizeof b.udp_ctrl[i] : 0;
    }
    const int n = recvmmsg(udp_fd_, b.udp_msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    now_real_ms_ = ClockMs(CLOCK_REALTIME_COARSE);
    now_mono_ms_ = ClockMs(CLOCK_MONOTONIC_COARSE);
    {
      std::unique_lock<std::mutex> lk(mu_);
      OpenBatch();
      for (int i = 0; i < n; ++i) {
        msghdr& h = b.udp_msgs[i].msg_hdr;
        uint8_t* buf = static_cast<uint8_t*>(b.udp_iov[i].iov_base);
        const size_t len = b.udp_msgs[i].msg_len;
        const bool trunc = (h.msg_flags & MSG_TRUNC) != 0;
        // UDP GRO: several datagrams of `gso` bytes (the last may be
        // shorter) in one buffer.
        int gso = 0;
        if (udp_gro_) {
          for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
              std::memcpy(&gso, CMSG_DATA(c), sizeof gso);
            }
          }
        }
        if (gso <= 0 || static_cast<size_t>(gso) >= len || trunc) {
          ProcessDatagram(buf, len, b.udp_from[i], trunc, lk);
        } else {
          for (size_t off = 0; off < len; off += static_cast<size_t>(gso)) {
            const size_t l = std::min(static_cast<size_t>(gso), len - off);
            ProcessDatagram(buf + off, l, b.udp_from[i], false, lk);
          }
        }
      }
      CloseBatch();
    }
    FlushAll();
    if (n < static_cast<int>(kBatch)) break;
  }
}

void Engine::PromoteNext(Peer& peer) {
  // The peer has started using the pending session: it becomes current,
  // the current one is kept for receiving, the old previous one goes.
  UnindexSession(peer.previous.get());
  std::unique_ptr<Session> drop = std::move(peer.previous);
  peer.previous = std::move(peer.current);
  peer.current = std::move(peer.next);
  ControlEvent ev;
  ev.type = ControlEvent::kSessionActive;
  ev.id = peer.id;
  ev.local_index = peer.current->local_index();
  Punt(std::move(ev));
}

void Engine::ProcessDatagram(uint8_t* buf, size_t len, const sockaddr_storage& from,
                             bool truncated, std::unique_lock<std::mutex>& lk) {
  if (truncated || len < 4) {
    malformed_.Add();
    return;
  }
  EnsureTxRoom(lk);  // at most one port send per datagram
  const uint8_t type = buf[0];
  if (type == kMsgData) {
    // A keepalive (empty frame) or one frame.
    if ((len != kDataOverhead && len < kDataOverhead + kMinFrame) ||
        (buf[1] & ~kDataFlagCsumPartial) != 0 || (buf[2] | buf[3]) != 0) {
      malformed_.Add();
      return;
    }
    auto it = by_index_.find(LoadLe32(buf + 4));
    if (it == by_index_.end()) {
      if (Peer* p = PeerByEndpoint(from)) {
        p->c.no_session.Add();
      } else {
        unknown_peer_.Add();
      }
      return;
    }
    Peer& peer = *it->second.peer;
    Session& s = *it->second.session;
    if (!(KeyOf(from) == peer.key)) {
      unknown_peer_.Add();
      return;
    }
    const uint64_t counter = LoadLe64(buf + 8);
    // Authenticate first, then the replay window (which also rejects
    // counters at or above kHardCounterLimit): unauthenticated datagrams can
    // neither move the window nor be counted as replays.
    if (!s.Open(buf, len)) {
      peer.c.bad_tag.Add();
      return;
    }
    if (!s.replay().CheckAndMark(counter)) {
      peer.c.replay.Add();
      return;
    }
    peer.c.rx_packets.Add();
    peer.c.rx_bytes.Add(len);
    peer.c.last_rx_ms.store(now_real_ms_, std::memory_order_relaxed);
    if (&s == peer.next.get()) PromoteNext(peer);
    if (len == kDataOverhead) return;  // keepalive: it only confirmed the session
    DeliverFromPeer(peer, buf + kDataHeaderBytes, len - kDataOverhead, (buf[1] & kDataFlagCsumPartial) != 0);
    return;
  }
  if (type == kMsgPlaintext) {
    Peer* p = PeerByEndpoint(from);
    if (p == nullptr) {
      unknown_peer_.Add();
      return;
    }
    if ((buf[1] | buf[2] | buf[3]) != 0 || len < kPlaintextHeaderBytes + kMinFrame) {
      malformed_.Add();
      return;
    }
    if (!p->plaintext) {
      p->c.not_plaintext.Add();
      return;
    }
    p->c.rx_packets.Add();
    p->c.rx_bytes.Add(len);
    p->c.last_rx_ms.store(now_real_ms_, std::memory_order_relaxed);
    DeliverFromPeer(*p, buf + kPlaintextHeaderBytes, len - kPlaintextHeaderBytes, false);
    return;
  }
  // Handshake (or anything else): for the control plane.
  ControlEvent ev;
  ev.type = ControlEvent::kHandshake;
  ev.host = AddressString(from, &ev.port);
  ev.data.assign(buf, buf + len);
  if (Punt(std::move(ev))) {
    udp_punted_.Add();
  } else {
    udp_punt_overflow_.Add();
  }
}

void Engine::DeliverFromPeer(Peer& peer, uint8_t* f, size_t len, bool csum_partial) {
  if (IsMulticastMac(f)) {  // the VPC carries no broadcast/multicast
    peer.c.no_route.Add();
    return;
  }
  auto rt = routes_.find(MacKey(f));
  if (rt == routes_.end() || rt->second.kind != RouteKind::kPort) {
    peer.c.no_route.Add();
    return;
  }
  auto pt = ports_.find(rt->second.id);
  if (pt == ports_.end()) {
    peer.c.no_route.Add();
    return;
  }
  // The source MAC must be one this peer hosts (routed to it): a host can
  // only speak for its own ENIs.
  auto sr = routes_.find(MacKey(f + 6));
  if (sr == routes_.end() || sr->second.kind != RouteKind::kPeer || sr->second.id != peer.id) {
    peer.c.spoofed.Add();
    return;
  }
  Port& dst = *pt->second;
  if (len > dst.cfg.mtu + kEthHeader) {
    dst.c.oversize.Add();
    return;
  }
  // A frame marked "checksum partial" reaches the guest as CHECKSUM_PARTIAL
  // (its kernel takes it as checksummed: the AEAD protected it end to end).
  virtio_net_hdr h{};
  if (csum_partial) {
    if (!TransportCsumOffsets(f, len, &h.csum_start, &h.csum_offset)) {
      malformed_.Add();
      return;
    }
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  }
  SgPacket pkt;
  if (!PassSecurity(dst, kSgDirIngress, f, len, pkt)) return;
  if (!PassAllowance(pt->second, true, len, 1, f, len, h)) return;
  QueueFromPeer(pt->second, f, len, h);
}

void Engine::QueueFromPeer(const std::shared_ptr<Port>& dst, uint8_t* f, size_t len,
                           const virtio_net_hdr& h) {
  TcpSegment t;
  const bool tcp = ParseMergeableTcp(f, len, (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) == 0, &t);
  if (tcp && !port_tx_.empty()) {
    PortTx& e = port_tx_.back();
    if (e.open && e.port == dst && t.seq == e.next_seq && t.payload <= e.tcp.payload &&
        e.total + t.payload - kEthHeader <= 65535 && e.extra_count < kMaxMergeSegments &&
        SameTcpFlow(e.data, e.tcp, f, t)) {
      merge_iov_.push_back({f + t.hdr, t.payload});
      ++e.extra_count;
      e.total += t.payload;
      e.next_seq += static_cast<uint32_t>(t.payload);
      // A PSH or a short segment ends the super-frame (as in Linux GRO).
      if (t.flags & 0x08) {
        e.extra_flags |= 0x08;
        e.open = false;
      }
      if (t.payload < e.tcp.payload) e.open = false;
      return;
    }
  }
  PortTx tx;
  tx.port = dst;
  std::memset(tx.vnet, 0, sizeof tx.vnet);
  std::memcpy(tx.vnet, &h, kVnetHdrBytes);
  tx.data = f;
  tx.len = len;
  tx.total = len;
  if (tcp) {
    tx.tcp = t;
    tx.open = (t.flags & 0x08) == 0;
    tx.next_seq = t.seq + static_cast<uint32_t>(t.payload);
    tx.extra_first = static_cast<uint32_t>(merge_iov_.size());
  }
  port_tx_.push_back(std::move(tx));
}

}  // namespace vpc
}  // namespace nitride
