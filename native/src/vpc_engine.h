// VPC data plane engine: the per-frame loop of the VPC NIC. The TypeScript
// control plane (ARP/DHCP responders, handshake, tables) drives it through
// the VpcEngine class of vpc_napi.cc; this part knows nothing of N-API.
//
// Topology: each ENI ("port") is a host-side netdev (host end of a veth pair
// whose other end is in the guest's netns, or the host side of a TAP whose
// fd QEMU holds). The engine reads the guest's frames from it with an
// AF_PACKET socket (SOCK_RAW, ETH_P_ALL, bound to the ifindex,
// PACKET_IGNORE_OUTGOING so it does not see its own transmissions,
// PACKET_VNET_HDR so that GSO super-frames and CHECKSUM_PARTIAL packets are
// described) and writes frames into the guest with sendmmsg/sendmsg on the
// same socket. AF_PACKET taps run before tc ingress, so a tc ingress drop on
// the netdev keeps the host stack out without hiding frames from the engine.
// Frames between hosts travel in UDP datagrams (vpc_wire.h) on one underlay
// UDP socket.
//
// Threads and locking: one worker thread runs an epoll loop over the UDP
// socket, every port's packet socket, an eventfd (wake-up / stop) and a
// timerfd (frames an allowance holds, released when due: ReleaseHeld). It
// reads a batch (recvmmsg, up to kBatch messages), takes the table mutex
// once, processes the whole batch (lookups, source checks, AES-GCM), queues
// the outgoing frames/datagrams in its own batches, releases the mutex and
// flushes them with sendmmsg. The JS thread takes the same mutex for table
// changes and stats (held for microseconds), so the per-frame path sees an
// uncontended lock once per batch. Whatever a queued send needs outlives the
// unlock: datagrams are fully built (destination address copied), and port
// sends hold a shared_ptr to the port (whose fd closes with the last
// reference). Counters are atomics written by one thread (relaxed load+store,
// no locked instruction) and read by stats(). Measured with a JS thread
// calling stats() + setRoute() every millisecond during a 2 Gbit/s TCP
// stream: 12 of 8188 batch lock acquisitions had to wait.
//
// Wake-ups: the worker sleeps in epoll_wait between batches, and a packet
// of a round trip (a ping, a TCP handshake) waits for one wake-up of each
// host's worker; the kernel path has none (softirq). So the worker asks for
// EEVDF's shortest slice (100 µs, sched_attr.sched_runtime, Linux >= 6.12):
// its share is unchanged, but on wake-up it may preempt a task running a
// default slice instead of queueing behind it (measured: TCP connections/s
// +10% median over five same-run pairs, within that test's noise; README,
// Security groups). A fixed busy-poll before sleeping (as the NBD lane does)
// was measured and lost: with both hosts' workers and the guests on two
// loaded cores, spinning takes the CPU the other side needs (TCP
// connections/s fell 3.5x at load 51-63). What the worker does instead
// (WaitEvents): an adaptive poll (vpc_poll.h, bounded by the daemon's
// --vpc-poll-us, default kPollMaxUs) that opens only after short idle times and yields
// the core between checks.
//
// Offloads (what makes one TCP flow go from ~0.75 to ~2 Gbit/s here):
// - guest -> local port: GSO super-frames and CHECKSUM_PARTIAL packets pass
//   through unchanged (virtio_net_hdr in, same header out);
// - guest -> peer: super-frames are segmented in software (vpc_frame.h) and
//   the equal-sized datagrams of a run go out as one UDP_SEGMENT send;
// - peer -> guest: the UDP socket has UDP_GRO (runs of datagrams arrive in
//   one read), and consecutive TCP segments of one flow are coalesced into
//   one GSO frame for the guest (QueueFromPeer), as a NIC's GRO would;
// - checksums: segments of a super-frame (and CHECKSUM_PARTIAL TCP/UDP
//   frames) cross to a peer that announced it marked "checksum partial"
//   (vpc_wire.h) with only the pseudo-header sum, and reach the guest as
//   CHECKSUM_PARTIAL, so no engine reads the payload for a checksum (were
//   two passes per byte, ~3% of a TCP stream's CPU). Frames that carry a
//   checksum of their own (from the guest's stack, or an older peer) are
//   still verified before being coalesced.
//
// AF_PACKET mode: recvmmsg batches, not a PACKET_MMAP ring. With offloads a
// read returns 64 KiB super-frames (a few per call), so the syscall is a
// small share; with MTU frames (guest GSO off) 6.5 frames came per recvmmsg
// and the cost per frame was dominated by the kernel work (the guest's TCP
// stack runs in the worker's softirq context), not by the read. TPACKET_V3
// would also add its block-retire timeout to the latency of sparse traffic.
#pragma once

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "vpc_allowance.h"
#include "vpc_crypto.h"
#include "vpc_frame.h"
#include "vpc_flowlog.h"
#include "vpc_nacl.h"
#include "vpc_poll.h"
#include "vpc_sg.h"
#include "vpc_wire.h"

namespace nitride {
namespace vpc {

// Errors thrown (C++ exceptions) by the control-plane methods; vpc_napi.cc
// turns them into Node-style JS errors.
struct VpcError {
  enum Kind { kSystem, kInvalid, kRange, kClosed } kind;
  std::string message;
  int err = 0;                   // kSystem: errno
  const char* syscall = nullptr;  // kSystem
};

// A counter with a single writer thread: relaxed load + store (a plain add
// on x86), readable from any thread.
struct Counter {
  std::atomic<uint64_t> v{0};
  void Add(uint64_t n = 1) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t Get() const { return v.load(std::memory_order_relaxed); }
};

struct PortStats {
  uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes;
  uint64_t spoofed, no_route, oversize, punted, punt_overflow, filtered,
      invalid, tx_errors, queue_full;
  // Security groups: packets no rule or tracked flow allowed; new flows
  // dropped because the conntrack table was full; flows tracked, the limit
  // (0: no groups on the port). Packets the subnet's network ACL denied.
  uint64_t sg_rejected, conntrack_full, conntrack_flows, conntrack_max;
  uint64_t nacl_rejected;
  // Frames over the ENI's allowances on arrival, queued or dropped (ENA's
  // names and meaning): bandwidth into and out of the guest, packets either way.
  uint64_t bw_in_exceeded, bw_out_exceeded, pps_exceeded;
};
struct PeerStats {
  uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes;
  uint64_t bad_tag, replay, no_session, not_plaintext, no_route, spoofed;
  int64_t last_rx_ms;
  uint32_t sessions;
};
struct UnderlayStats {
  uint64_t unknown_peer, malformed, punted, punt_overflow, tx_errors;
};
// The worker's busy-polls before sleeping (PollWindow): caught the next
// event, ran out.
struct WorkerStats {
  uint64_t polls_won, polls_lost;
};
struct EngineStats {
  std::vector<std::pair<uint32_t, PortStats>> ports;
  std::vector<std::pair<uint32_t, PeerStats>> peers;
  UnderlayStats underlay;
  WorkerStats worker;
};

// An event for JS (onControl).
struct ControlEvent {
  enum Type { kFrame, kHandshake, kRekeyNeeded, kSessionActive, kPortError } type;
  uint32_t id = 0;          // port id (kFrame, kPortError) or peer id
  uint32_t local_index = 0;  // kRekeyNeeded, kSessionActive
  const char* reason = "";   // kFrame: PuntReasonName; kRekeyNeeded: "packets" | "age" | "exhausted"
  std::string host;          // kHandshake: sender address
  uint16_t port = 0;         // kHandshake: sender port
  int err = 0;               // kPortError: errno
  std::vector<uint8_t> data;  // kFrame: the frame; kHandshake: the datagram
};

struct PortConfig {
  PortPolicy policy;
  uint32_t mtu = 1500;
  // Bandwidth (bits/s) and packets/s, each applied separately to traffic
  // into the guest and out of it; 0: unlimited.
  AllowanceLimits allowance;
};

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

struct SessionKeys {
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  uint8_t send_key[kKeyBytes];
  uint8_t recv_key[kKeyBytes];
};

class Engine {
 public:
  static constexpr unsigned kBatch = 64;
  // Coalescing bounds: segments appended per frame, and in all.
  static constexpr unsigned kMaxMergeSegments = 63;
  static constexpr size_t kMaxMergeIov = kBatch * kMaxMergeSegments;
  // Default packet limit of a session (rekey-needed event); the age limit is
  // vpc::kDefaultRekeySeconds.
  static constexpr uint64_t kDefaultRekeyPackets = uint64_t{1} << 32;
  // Bounds of the frames an allowance holds, per port and direction (the
  // time bound is AllowanceLimits::queue).
  static constexpr size_t kMaxHeldFrames = 1024;
  static constexpr size_t kMaxHeldBytes = size_t{4} << 20;
  // Bound of the queue of events waiting for JS.
  static constexpr size_t kMaxQueuedEvents = 2048;

  // Creates and binds the UDP socket (throws VpcError). `poll_max_us`: the
  // worker's longest busy-poll before sleeping (kPollMaxUs by default, at
  // most kPollMaxLimitUs; 0: never). `notify` is called from the worker
  // thread whenever the event queue goes from empty to non-empty; the owner
  // then calls TakeEvents() on its thread.
  Engine(const std::string& bind_address, uint16_t bind_port, uint32_t poll_max_us,
         std::function<void()> notify);
  ~Engine();  // Close()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void Start();  // starts the worker thread (throws VpcError)
  // Stops and joins the worker, closes every socket, frees every session
  // (cleansing its keys). Idempotent.
  void Close();
  bool closed() const { return closed_; }
  uint16_t port() const { return port_; }

  // `existing_fd` >= 0: an AF_PACKET socket already bound to `ifname` (ETH_P_ALL, with
  // PACKET_VNET_HDR), e.g. from the systemd fd store across a restart; the engine owns it.
  void AddPort(uint32_t id, const std::string& ifname, const PortConfig& cfg, int existing_fd = -1);
  // The port's packet socket (for the fd store); -1 if there is no such port.
  int PortFd(uint32_t id);
  // While held, ports added are not read: a set of ports whose sockets already hold queued
  // frames (kept across a restart) starts forwarding only once every port and route is in.
  void HoldPorts();
  void ReleasePorts();
  void UpdatePort(uint32_t id, const PortConfig& cfg);
  PortConfig GetPortConfig(uint32_t id);
  bool RemovePort(uint32_t id);  // false if there was no such port

  enum class RouteKind : uint8_t { kPort, kPeer, kControl };
  void SetRoute(const uint8_t mac[6], RouteKind kind, uint32_t id);
  bool DeleteRoute(const uint8_t mac[6]);

  // `host` must be a numeric IPv4/IPv6 address.
  Endpoint ParseEndpoint(const std::string& host, uint16_t port) const;
  void AddPeer(uint32_t id, const Endpoint& ep);
  bool RemovePeer(uint32_t id);  // false if there was no such peer
  void SetPeerEndpoint(uint32_t id, const Endpoint& ep);
  void SetPlaintext(uint32_t id, bool on);
  // pending = false: the new session becomes current at once (a pending
  // one, else the previous current, kept for receiving). pending = true:
  // it only receives until the first authenticated message arrives on it,
  // then becomes current (the responder side of a handshake).
  // csum_partial: the peer takes frames marked kDataFlagCsumPartial.
  void SetSession(uint32_t id, const SessionKeys& keys, bool pending, bool csum_partial = false);
  void ClearSessions(uint32_t id);
  // Sends an empty data message on the current session (the initiator's
  // confirmation after a handshake, so the responder promotes its pending
  // session without waiting for traffic). False when there is no session to
  // send with (or the peer is in plaintext mode). Not counted in txPackets
  // (those counters have the worker as their only writer).
  bool SendKeepalive(uint32_t id);
  void SetRekeyLimits(uint64_t packets, uint64_t seconds);

  void SendFrame(uint32_t port_id, const uint8_t* frame, size_t len);
  void SendUnderlay(const Endpoint& ep, const uint8_t* data, size_t len);

  // Security groups of a port: `table` (null: none, every packet passes and
  // the tracked flows go) applies to the next packet; tracked flows stay.
  // `nacl` (null: none) is its subnet's network ACL, checked first; both
  // are swapped together.
  void SetSecurity(uint32_t port_id, std::shared_ptr<const SgTable> table, const CtConfig& cfg,
                   std::shared_ptr<const NaclTable> nacl);
  // Flow-log counters of a port: on with room for `max_keys` flow keys, off
  // (and freed) with 0.
  void SetFlowLog(uint32_t port_id, size_t max_keys);
  // Takes the port's counters (the table starts empty); *dropped = packets
  // not counted for lack of room; *mono_ms = the engine clock now.
  void TakeFlowLog(uint32_t port_id, FlowLogMap* out, uint64_t* dropped, int64_t* mono_ms);
  // Forgets the port's tracked flows; returns how many there were.
  size_t FlushConntrack(uint32_t port_id);
  // Up to `max` tracked flows of the port; *count = all of them.
  std::vector<CtFlowInfo> ListConntrack(uint32_t port_id, size_t max, size_t* count, uint32_t* limit);

  EngineStats Stats();
  std::deque<ControlEvent> TakeEvents();

 private:
  struct PortCounters {
    Counter rx_frames, rx_bytes, tx_frames, tx_bytes, spoofed, no_route,
        oversize, punted, punt_overflow, filtered, invalid, tx_errors,
        sg_rejected, conntrack_full, nacl_rejected, bw_in_exceeded,
        bw_out_exceeded, pps_exceeded;
    // Written by the JS thread (sendFrame; stats() for queue_full).
    std::atomic<uint64_t> js_tx_frames{0}, js_tx_bytes{0};
    // Frames the kernel dropped because the socket's receive queue was
    // full (PACKET_STATISTICS tp_drops, which reset on every read: summed).
    std::atomic<uint64_t> queue_full{0};
  };
  // A frame an allowance holds until `at` (NowSeconds()): its
  // virtio_net_hdr and bytes, copied out of the receive buffers.
  struct Held {
    double at;
    uint8_t vnet[kVnetHdrBytes];
    std::vector<uint8_t> frame;
  };
  struct HeldQueue {
    std::deque<Held> frames;
    size_t bytes = 0;
  };
  struct Port {
    uint32_t id = 0;
    int fd = -1;
    int ifindex = 0;
    std::string ifname;
    PortConfig cfg;
    // Security groups (mu_): the compiled rules, swapped whole by
    // SetSecurity, and the tracked flows, which outlive a swap.
    std::shared_ptr<const SgTable> sg;
    std::unique_ptr<Conntrack> ct;
    std::shared_ptr<const NaclTable> nacl;  // the subnet's network ACL
    std::unique_ptr<FlowLogTable> flowlog;  // null: no flow log covers it
    // The allowances (mu_): into the guest and out of it, and the frames
    // each holds until its tokens are there (in order; in shaping_ while any).
    Allowance allow_in, allow_out;
    HeldQueue held_in, held_out;
    bool shaping = false;
    PortCounters c;
    int last_err = 0;  // worker: last socket error reported
    ~Port();
  };
  struct Route {
    RouteKind kind;
    uint32_t id;
  };
  // An endpoint as a hashable key: IPv6 (IPv4 as ::ffff:a.b.c.d) + port.
  struct EpKey {
    uint8_t addr[16];
    uint16_t port;
    bool operator==(const EpKey& o) const {
      return port == o.port && std::memcmp(addr, o.addr, 16) == 0;
    }
  };
  struct EpKeyHash {
    size_t operator()(const EpKey& k) const;
  };
  struct PeerCounters {
    Counter tx_packets, tx_bytes, rx_packets, rx_bytes, bad_tag, replay,
        no_session, not_plaintext, no_route, spoofed;
    std::atomic<int64_t> last_rx_ms{0};
  };
  struct Peer {
    uint32_t id = 0;
    Endpoint ep;
    EpKey key;
    bool plaintext = false;
    std::unique_ptr<Session> current, previous, next;
    PeerCounters c;
  };
  static EpKey KeyOf(const sockaddr_storage& a);

  // Worker side.
  struct PortTx {
    std::shared_ptr<Port> port;
    uint8_t vnet[kVnetHdrBytes];
    uint8_t* data;  // rx buffer memory, stable until the next flush
    size_t len;
    // Receive coalescing of TCP segments from a peer (see vpc_frame.h):
    // payloads of the segments after the first are merge_iov_[extra_first
    // .. extra_first + extra_count).
    bool open = false;  // more segments may be appended
    TcpSegment tcp;
    uint32_t next_seq = 0;
    size_t total = 0;  // frame length including appended payloads
    uint32_t extra_first = 0, extra_count = 0;
    uint8_t extra_flags = 0;  // PSH of an appended segment
  };
  // h: zero, or NEEDS_CSUM at the transport checksum for a frame its
  // sending engine marked "checksum partial" (not verified, not complete).
  void QueueFromPeer(const std::shared_ptr<Port>& dst, uint8_t* f, size_t len, const virtio_net_hdr& h);
  // Local delivery: the frame goes out as it came in, GSO and
  // CHECKSUM_PARTIAL included (the kernel finishes it if the receiving
  // device needs that).
  void QueueLocal(const std::shared_ptr<Port>& dst, uint8_t* f, size_t len, const virtio_net_hdr& h);
  void Run();
  int WaitEvents(epoll_event* evs);
  void HandlePort(uint32_t id, uint32_t events);
  void HandleUnderlay();
  void ProcessGuestFrame(const std::shared_ptr<Port>& port, uint8_t* buf,
                         size_t len, bool truncated,
                         std::unique_lock<std::mutex>& lk);
  void ForwardGuestFrame(const std::shared_ptr<Port>& src, uint8_t* f,
                         size_t len, const virtio_net_hdr& h,
                         std::unique_lock<std::mutex>& lk);
  void PuntFrame(Port& port, PuntReason reason, const uint8_t* f, size_t len);
  // The allowances' clock: within a batch (OpenBatch .. CloseBatch), one
  // fine read shared by its frames (batch_now_); outside one, a read per call.
  double AllowanceNow();
  void OpenBatch() { batch_open_ = true; batch_now_ = 0; }
  void CloseBatch() { batch_open_ = false; }
  // The port's allowance for frame `f` (`len` bytes, header `h`) of
  // `segments` segments and `wire` bytes on the wire, going into (`in`) or
  // out of the guest (mu_ held). true: send it now; false: the allowance
  // holds a copy of it (sent by ReleaseHeld) or dropped it (counted).
  bool PassAllowance(const std::shared_ptr<Port>& port, bool in, size_t wire, size_t segments,
                     const uint8_t* f, size_t len, const virtio_net_hdr& h);
  void Hold(const std::shared_ptr<Port>& port, HeldQueue& q, double at, const uint8_t* f, size_t len,
            const virtio_net_hdr& h);
  void ArmTimer(double at);  // mu_ held
  // Timer: sends the held frames whose time has come, re-arms for the next.
  void ReleaseHeld();
  // Whether a guest frame is addressed to the control plane (the gateway
  // MAC): not charged to the ENI's allowance (mu_ held).
  bool ToControlPlane(const uint8_t* f) const;
  // A frame's IPv4 fields, parsed once for the security groups of both ends.
  struct SgPacket {
    bool parsed = false;
    FlowParse result = FlowParse::kNotIpv4;
    FlowPacket p;
  };
  // The port's network ACL, then its security groups, for a packet of direction `dir` (mu_ held);
  // false: drop it (counted on the port).
  bool PassSecurity(Port& port, int dir, const uint8_t* f, size_t len, SgPacket& pkt);
  // The verdict of PassSecurity on a parsed IPv4 packet (counted on the port).
  bool Judge(Port& port, int dir, size_t len, const FlowPacket& p);
  // csum_partial: f holds only the pseudo-header sum at its transport
  // checksum (TransportCsumOffsets); it goes marked to a peer that takes
  // the mark, and is completed in place for any other.
  void SendToPeer(Peer& peer, uint8_t* f, size_t len, bool csum_partial = false);
  static void SegmentToPeer(void* ctx, uint8_t* seg, size_t len);
  void ProcessDatagram(uint8_t* buf, size_t len, const sockaddr_storage& from,
                       bool truncated, std::unique_lock<std::mutex>& lk);
  void DeliverFromPeer(Peer& peer, uint8_t* f, size_t len, bool csum_partial);
  Peer* PeerByEndpoint(const sockaddr_storage& from);
  void PromoteNext(Peer& peer);
  void MaybeSignalRekey(Peer& peer, Session& s);
  bool Punt(ControlEvent&& ev);  // false: queue full
  void FlushPortTx();
  void FlushUdpTx();
  void FlushAll() {
    FlushUdpTx();
    FlushPortTx();
  }
  bool TxFull() const {
    return udp_tx_count_ >= kBatch || port_tx_.size() >= kBatch ||
           merge_iov_.size() >= kMaxMergeIov;
  }
  void EnsureTxRoom(std::unique_lock<std::mutex>& lk) {
    if (TxFull()) {
      lk.unlock();
      FlushAll();
      lk.lock();
      batch_now_ = 0;  // the flush took time: the batch's allowance clock is read again
    }
  }
  void ReportPortError(Port& port, int err);

  // Control side helpers (mu_ held).
  Peer& PeerRef(uint32_t id, const char* fn);
  void IndexSession(Peer& p, Session* s);
  void UnindexSession(Session* s);
  void RequireOpen(const char* fn) const;
  // Registers a bound packet socket as port `id` (takes ownership of `fd`).
  void InstallPort(uint32_t id, unsigned ifindex, const std::string& ifname, const PortConfig& cfg, int fd);

  // Immutable after construction.
  int udp_fd_ = -1;
  bool udp_gro_ = false;  // UDP_GRO enabled on udp_fd_
  bool udp_gso_ = true;   // worker: UDP_SEGMENT sends still allowed
  int family_ = AF_INET;
  uint16_t port_ = 0;
  int epfd_ = -1;
  int wakefd_ = -1;
  int timerfd_ = -1;  // releases held frames (ReleaseHeld)
  std::function<void()> notify_;

  bool closed_ = false;  // JS thread only
  std::atomic<bool> stop_{false};
  std::thread worker_;

  std::mutex mu_;  // the tables below
  // Ports with frames held by an allowance (Port::shaping), and when the
  // timer fires next (0: disarmed).
  std::vector<std::shared_ptr<Port>> shaping_;
  double timer_at_ = 0;
  std::unordered_map<uint32_t, std::shared_ptr<Port>> ports_;
  bool hold_ports_ = false;
  std::vector<uint32_t> held_ports_;  // added while held: not in epoll yet
  std::unordered_map<uint64_t, Route> routes_;
  std::unordered_map<uint32_t, std::unique_ptr<Peer>> peers_;
  std::unordered_map<EpKey, Peer*, EpKeyHash> by_endpoint_;
  struct IndexEntry {
    Peer* peer;
    Session* session;
  };
  std::unordered_map<uint32_t, IndexEntry> by_index_;
  uint64_t rekey_packets_ = kDefaultRekeyPackets;
  int64_t rekey_ms_ = kDefaultRekeySeconds * 1000;

  // Busy-poll before sleeping (worker only; --vpc-poll-us, WaitEvents).
  PollWindow poll_;
  Counter polls_won_, polls_lost_;

  // Underlay counters (worker writes).
  Counter unknown_peer_, malformed_, udp_punted_, udp_punt_overflow_,
      udp_tx_errors_;

  // Events for JS.
  std::mutex ev_mu_;
  std::deque<ControlEvent> events_;
  bool notify_pending_ = false;  // a notify is outstanding (ev_mu_)

  // Worker-owned buffers and batches.
  struct Buffers;
  std::unique_ptr<Buffers> b_;
  unsigned udp_tx_count_ = 0;
  std::vector<PortTx> port_tx_;
  std::vector<iovec> merge_iov_;    // appended payloads (PortTx)
  std::vector<iovec> port_tx_iov_;  // FlushPortTx scratch
  std::vector<Held> released_;      // held frames being sent (until the flush)
  int64_t now_mono_ms_ = 0;
  int64_t now_real_ms_ = 0;
  // The allowances' clock within one recvmmsg batch (AllowanceNow): read at
  // the batch's first limited frame and shared by the rest, as a fine clock
  // read (~30 ns here) was most of an allowance's cost per 64-byte frame.
  bool batch_open_ = false;
  double batch_now_ = 0;
};

}  // namespace vpc
}  // namespace nitride
