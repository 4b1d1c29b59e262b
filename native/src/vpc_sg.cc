// Security groups: the rule classifier and connection tracking (vpc_sg.h).
#include "vpc_sg.h"

#include <algorithm>

#include "vpc_wire.h"

namespace nitride {
namespace vpc {

namespace {

constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;
constexpr uint8_t kIcmpEchoReply = 0, kIcmpUnreachable = 3, kIcmpSourceQuench = 4, kIcmpRedirect = 5,
                  kIcmpEcho = 8, kIcmpTimeExceeded = 11, kIcmpParamProblem = 12;

uint32_t MaskOf(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }

bool IsIcmpError(uint8_t type) {
  return type == kIcmpUnreachable || type == kIcmpSourceQuench || type == kIcmpRedirect ||
         type == kIcmpTimeExceeded || type == kIcmpParamProblem;
}

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

FlowParse ParseFlowPacket(const uint8_t* f, size_t len, FlowPacket* p) {
  if (LoadBe16(f + 12) != kEtherIpv4) return FlowParse::kNotIpv4;
  const uint8_t* ip = f + kEthHeader;
  const size_t avail = len - kEthHeader;
  if (avail < 20 || (ip[0] >> 4) != 4) return FlowParse::kInvalid;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > avail) return FlowParse::kInvalid;
  p->proto = ip[9];
  p->src = LoadBe32(ip + 12);
  p->dst = LoadBe32(ip + 16);
  const uint16_t frag = LoadBe16(ip + 6);
  p->fragment = (frag & 0x1fff) != 0;
  if (p->fragment) return FlowParse::kOk;
  const uint8_t* l4 = ip + ihl;
  const size_t l4len = avail - ihl;
  switch (p->proto) {
    case kProtoTcp:
      if (l4len < 20) return FlowParse::kInvalid;
      p->sport = LoadBe16(l4);
      p->dport = LoadBe16(l4 + 2);
      p->tcp_flags = l4[13];
      break;
    case kProtoUdp:
      if (l4len < 8) return FlowParse::kInvalid;
      p->sport = LoadBe16(l4);
      p->dport = LoadBe16(l4 + 2);
      break;
    case kProtoIcmp: {
      if (l4len < 8) return FlowParse::kInvalid;
      p->icmp_type = l4[0];
      p->icmp_code = l4[1];
      if (p->icmp_type == kIcmpEcho || p->icmp_type == kIcmpEchoReply) {
        p->icmp_echo = true;
        p->sport = p->dport = LoadBe16(l4 + 4);
      } else if (IsIcmpError(p->icmp_type)) {
        // The quoted packet: its IP header and at least 8 bytes of transport header.
        const uint8_t* in = l4 + 8;
        const size_t inlen = l4len - 8;
        if (inlen < 20 || (in[0] >> 4) != 4) return FlowParse::kInvalid;
        const size_t inihl = static_cast<size_t>(in[0] & 0x0f) * 4;
        if (inihl < 20 || inlen < inihl + 8) return FlowParse::kInvalid;
        p->icmp_error = true;
        p->inner.proto = in[9];
        p->inner.src = LoadBe32(in + 12);
        p->inner.dst = LoadBe32(in + 16);
        if (p->inner.proto == kProtoTcp || p->inner.proto == kProtoUdp) {
          p->inner.sport = LoadBe16(in + inihl);
          p->inner.dport = LoadBe16(in + inihl + 2);
        } else if (p->inner.proto == kProtoIcmp) {
          p->inner.sport = p->inner.dport = LoadBe16(in + inihl + 4);
        }
      }
      break;
    }
    default:
      break;
  }
  return FlowParse::kOk;
}

// ---------------------------------------------------------------------------
// Classifier.

bool SgTable::Ranges::Contains(uint16_t x) const {
  // The last range starting at or below x.
  auto it = std::upper_bound(r.begin(), r.end(), x, [](uint16_t v, const std::pair<uint16_t, uint16_t>& e) { return v < e.first; });
  return it != r.begin() && x <= std::prev(it)->second;
}

std::shared_ptr<const SgTable> SgTable::Build(const uint8_t* data, size_t len, std::string* err) {
  if (len % kSgEntryBytes != 0) {
    *err = "security group table length " + std::to_string(len) + " is not a multiple of " + std::to_string(kSgEntryBytes);
    return nullptr;
  }
  auto t = std::make_shared<SgTable>();
  for (size_t o = 0; o < len; o += kSgEntryBytes) {
    const uint8_t* e = data + o;
    const uint8_t dir = e[0], proto = e[1], prefix = e[2];
    const uint32_t net = LoadLe32(e + 4);
    const uint16_t lo = static_cast<uint16_t>(e[8] | (e[9] << 8));
    const uint16_t hi = static_cast<uint16_t>(e[10] | (e[11] << 8));
    if (dir > kSgDirEgress || prefix > 32 || lo > hi || (net & ~MaskOf(prefix)) != 0 ||
        (proto != kSgProtoAll && proto != kProtoIcmp && proto != kProtoTcp && proto != kProtoUdp)) {
      *err = "security group table entry " + std::to_string(o / kSgEntryBytes) + " is malformed";
      return nullptr;
    }
    auto& levels = t->levels_[dir];
    auto lv = std::find_if(levels.begin(), levels.end(), [&](const Level& l) { return l.prefix == prefix; });
    if (lv == levels.end()) {
      levels.push_back(Level{prefix, MaskOf(prefix), {}});
      lv = std::prev(levels.end());
    }
    Bucket& b = lv->nets[net];
    switch (proto) {
      case kSgProtoAll: b.all = true; break;
      case kProtoIcmp: b.icmp.r.emplace_back(lo, hi); break;
      case kProtoTcp: b.tcp.r.emplace_back(lo, hi); break;
      default: b.udp.r.emplace_back(lo, hi); break;
    }
    ++t->entries_;
  }
  for (auto& levels : t->levels_) {
    // Longest prefixes first: the likelier hit for source-group members (/32).
    std::sort(levels.begin(), levels.end(), [](const Level& a, const Level& b) { return a.prefix > b.prefix; });
    for (Level& l : levels) {
      for (auto& [net, b] : l.nets) {
        for (Ranges* rs : {&b.icmp, &b.tcp, &b.udp}) {
          auto& r = rs->r;
          std::sort(r.begin(), r.end());
          std::vector<std::pair<uint16_t, uint16_t>> merged;
          for (const auto& x : r) {
            if (!merged.empty() && uint32_t{x.first} <= uint32_t{merged.back().second} + 1) {
              merged.back().second = std::max(merged.back().second, x.second);
            } else {
              merged.push_back(x);
            }
          }
          r.swap(merged);
        }
      }
    }
  }
  return t;
}

bool SgTable::Allows(int dir, uint8_t proto, uint32_t peer, uint16_t port) const {
  for (const Level& l : levels_[dir]) {
    auto it = l.nets.find(peer & l.mask);
    if (it == l.nets.end()) continue;
    const Bucket& b = it->second;
    if (b.all) return true;
    const Ranges* rs = proto == kProtoTcp ? &b.tcp : proto == kProtoUdp ? &b.udp : proto == kProtoIcmp ? &b.icmp : nullptr;
    if (rs != nullptr && rs->Contains(port)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Connection tracking.

size_t Conntrack::KeyHash::operator()(const Key& k) const {
  const uint64_t a = (uint64_t{k.in_ip} << 32) | k.out_ip;
  const uint64_t b = (uint64_t{k.in_port} << 32) | (uint64_t{k.out_port} << 16) | k.proto;
  return static_cast<size_t>(Mix(a ^ Mix(b)));
}

size_t Conntrack::BytesPerFlow() {
  // libstdc++ node: next pointer, the pair, the cached hash; plus malloc's
  // header and one bucket pointer at load factor 1.
  return sizeof(void*) + sizeof(std::pair<const Key, Entry>) + sizeof(size_t) + 16 + sizeof(void*);
}

int64_t Conntrack::Timeout(uint8_t proto, uint8_t state) const {
  int64_t s;
  if (proto == kProtoTcp) {
    s = state == kNew ? kCtTcpHalfOpenS : state == kClosing ? kCtTcpClosingS : cfg_.tcp_established_s;
  } else if (proto == kProtoUdp) {
    s = state == kStream ? kCtUdpStreamS : kCtUdpS;
  } else {
    s = kCtIcmpS;
  }
  return s * 1000;
}

const char* Conntrack::StateName(uint8_t proto, uint8_t state) {
  if (proto == kProtoTcp) return state == kNew ? "syn-sent" : state == kClosing ? "closing" : "established";
  return state == kNew ? "unreplied" : state == kStream ? "stream" : "replied";
}

Conntrack::Verdict Conntrack::Process(const FlowPacket& p, int dir, const SgTable& table, int64_t now_ms, size_t bytes) {
  if (p.fragment) return Verdict::kAllow;
  const bool ingress = dir == kSgDirIngress;
  const uint32_t peer = ingress ? p.src : p.dst;
  if (p.icmp_error) {
    // Related: the quoted packet went the other way, so its source is this ENI's side on ingress.
    Key k{};
    k.proto = p.inner.proto;
    k.in_ip = ingress ? p.inner.src : p.inner.dst;
    k.out_ip = ingress ? p.inner.dst : p.inner.src;
    k.in_port = ingress ? p.inner.sport : p.inner.dport;
    k.out_port = ingress ? p.inner.dport : p.inner.sport;
    auto it = flows_.find(k);
    if (it != flows_.end() && it->second.expires_ms > now_ms) return Verdict::kAllow;
    return table.Allows(dir, p.proto, peer, static_cast<uint16_t>((p.icmp_type << 8) | p.icmp_code)) ? Verdict::kAllow : Verdict::kDeny;
  }
  const bool tracked = p.proto == kProtoTcp || p.proto == kProtoUdp || (p.proto == kProtoIcmp && p.icmp_echo);
  const uint16_t rule_port = RulePort(p);
  if (!tracked) return table.Allows(dir, p.proto, peer, rule_port) ? Verdict::kAllow : Verdict::kDeny;

  Key k{};
  k.proto = p.proto;
  k.in_ip = ingress ? p.dst : p.src;
  k.out_ip = peer;
  k.in_port = ingress ? p.dport : p.sport;
  k.out_port = ingress ? p.sport : p.dport;
  const bool tcp = p.proto == kProtoTcp;
  const bool syn_only = tcp && (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn;
  auto it = flows_.find(k);
  if (it != flows_.end()) {
    Entry& e = it->second;
    if (e.expires_ms <= now_ms || (e.state == kClosing && syn_only)) {
      flows_.erase(it);  // over: judged as a new flow below
    } else {
      const bool from_origin = dir == e.origin;
      if (tcp) {
        if (p.tcp_flags & kTcpRst) {
          e.state = kClosing;
        } else if (e.state != kClosing) {
          if (p.tcp_flags & kTcpFin) e.fin |= uint8_t(1u << dir);
          if (e.fin == 3) {
            e.state = kClosing;
          } else if (!from_origin && e.state == kNew) {
            e.state = kEstablished;
          }
        }
      } else if (!from_origin) {
        if (e.state == kNew) e.state = kEstablished;  // replied
      } else if (e.state == kEstablished && p.proto == kProtoUdp) {
        e.state = kStream;
      }
      e.packets[dir] += 1;
      e.bytes[dir] += bytes;
      e.expires_ms = now_ms + Timeout(p.proto, e.state);
      return Verdict::kAllow;
    }
  }
  // A new flow. An ICMP echo reply never starts one.
  if ((tcp && !syn_only) || (p.proto == kProtoIcmp && p.icmp_type != kIcmpEcho)) return Verdict::kDeny;
  if (!table.Allows(dir, p.proto, peer, rule_port)) return Verdict::kDeny;
  if (flows_.size() >= cfg_.max_flows) {
    if (now_ms - last_sweep_ms_ >= 1000) {
      last_sweep_ms_ = now_ms;
      for (auto i = flows_.begin(); i != flows_.end();) {
        i = i->second.expires_ms <= now_ms ? flows_.erase(i) : std::next(i);
      }
    }
    if (flows_.size() >= cfg_.max_flows) return Verdict::kFull;
  }
  Entry e{};
  e.state = kNew;
  e.origin = static_cast<uint8_t>(dir);
  e.packets[dir] = 1;
  e.bytes[dir] = bytes;
  e.expires_ms = now_ms + Timeout(p.proto, kNew);
  flows_.emplace(k, e);
  return Verdict::kAllow;
}

size_t Conntrack::Flush() {
  const size_t n = flows_.size();
  flows_.clear();
  return n;
}

void Conntrack::List(std::vector<CtFlowInfo>* out, size_t max, int64_t now_ms) const {
  for (const auto& [k, e] : flows_) {
    if (out->size() >= max) return;
    if (e.expires_ms <= now_ms) continue;
    CtFlowInfo f{};
    f.proto = k.proto;
    f.local_ip = k.in_ip;
    f.remote_ip = k.out_ip;
    f.local_port = k.in_port;
    f.remote_port = k.out_port;
    f.origin = e.origin;
    f.state = StateName(k.proto, e.state);
    f.expires_in_ms = e.expires_ms - now_ms;
    for (int d = 0; d < 2; ++d) {
      f.packets[d] = e.packets[d];
      f.bytes[d] = e.bytes[d];
    }
    out->push_back(f);
  }
}

}  // namespace vpc
}  // namespace nitride
