// Micro benchmark of the security groups' new-flow path (vpc_sg.cc), CPU only:
// per TCP connection (SYN, SYN-ACK, ACK, FIN, FIN, ACK through one ENI's
// conntrack: a miss, the classifier, an insert, then hits) and per classifier
// lookup, a member's address (found at the first prefix length) and one no
// rule matches (every prefix length probed), with the rule sets of scripts/bench/net.mjs's nitride-sg path (n - 1
// tcp rules from distinct /24s and /32s that never match, then one allowing
// all from the group's members), over 28,000 client ports as a connection
// loop cycles its ephemeral ports. Prints the median of the rounds (thread CPU
// time).
// Built and run by scripts/bench-sg.sh.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "vpc_sg.h"

namespace vpc = nitride::vpc;
using vpc::Conntrack;
using vpc::CtConfig;
using vpc::FlowPacket;
using vpc::SgTable;

namespace {

constexpr uint32_t kGuestA = 0xac1f010a, kGuestB = 0xac1f0114;  // 172.31.1.10, .20
constexpr int kPorts = 28000;

void Put(std::vector<uint8_t>* b, uint8_t dir, uint8_t proto, uint8_t prefix, uint32_t net, uint16_t lo, uint16_t hi) {
  uint8_t e[vpc::kSgEntryBytes] = {dir, proto, prefix, 0};
  for (int i = 0; i < 4; ++i) e[4 + i] = static_cast<uint8_t>(net >> (8 * i));
  e[8] = static_cast<uint8_t>(lo), e[9] = static_cast<uint8_t>(lo >> 8);
  e[10] = static_cast<uint8_t>(hi), e[11] = static_cast<uint8_t>(hi >> 8);
  b->insert(b->end(), e, e + sizeof e);
}

std::shared_ptr<const SgTable> Rules(int n) {
  std::vector<uint8_t> b;
  for (int i = 0; i < n - 1; ++i) {
    const bool cidr24 = i % 2 != 0;
    const uint32_t net = cidr24 ? (10u << 24) | (((i >> 8) & 255u) << 16) | ((i & 255u) << 8)
                                : (192u << 24) | (168u << 16) | (((i >> 8) & 255u) << 8) | (i & 255u);
    Put(&b, vpc::kSgDirIngress, vpc::kProtoTcp, cidr24 ? 24 : 32, net, 10000 + i, 10000 + i);
  }
  for (uint32_t member : {kGuestA, kGuestB}) Put(&b, vpc::kSgDirIngress, vpc::kSgProtoAll, 32, member, 0, 0xffff);
  Put(&b, vpc::kSgDirEgress, vpc::kSgProtoAll, 0, 0, 0, 0xffff);
  std::string err;
  auto t = SgTable::Build(b.data(), b.size(), &err);
  if (!t) {
    std::fprintf(stderr, "sg-bench: %s\n", err.c_str());
    std::exit(1);
  }
  return t;
}

// The thread's CPU time: on a loaded machine, time spent preempted is not the code's.
double Seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int conns = 200000;
  std::printf("%-6s %14s %14s %14s %9s\n", "rules", "ns/connection", "ns/hit", "ns/miss", "tracked");
  for (int n : {1, 60, 1000}) {
    const auto table = Rules(n);
    std::vector<double> per_conn, per_hit, per_miss;
    size_t tracked = 0;
    for (int r = 0; r < rounds; ++r) {
      Conntrack ct(CtConfig{65536, 432000});
      int64_t now_ms = 1000000;
      uint64_t allowed = 0;
      const double t0 = Seconds();
      for (int i = 0; i < conns; ++i) {
        // Guest B's ingress: the client (A) opens, the server (B) closes first.
        static const uint8_t kFlags[6] = {0x02, 0x12, 0x10, 0x11, 0x11, 0x10};
        const uint16_t client = static_cast<uint16_t>(32768 + i % kPorts);
        for (int k = 0; k < 6; ++k) {
          FlowPacket p{};
          p.proto = vpc::kProtoTcp;
          p.tcp_flags = kFlags[k];
          const bool in = k % 2 == 0;
          p.src = in ? kGuestA : kGuestB;
          p.dst = in ? kGuestB : kGuestA;
          p.sport = in ? client : 5301;
          p.dport = in ? 5301 : client;
          allowed += ct.Process(p, in ? vpc::kSgDirIngress : vpc::kSgDirEgress, *table, now_ms, 60) == Conntrack::Verdict::kAllow;
        }
        if (i % 4 == 0) ++now_ms;  // 4,000 connections/s of engine clock
      }
      per_conn.push_back((Seconds() - t0) * 1e9 / conns);
      if (allowed != uint64_t{6} * conns) {
        std::fprintf(stderr, "sg-bench: %llu of %d packets allowed\n", static_cast<unsigned long long>(allowed), 6 * conns);
        return 1;
      }
      tracked = ct.size();
      uint64_t hits = 0;
      const double t1 = Seconds();
      for (int i = 0; i < conns; ++i) hits += table->Allows(vpc::kSgDirIngress, vpc::kProtoTcp, kGuestA + (i & 1) * 10, 5301);
      per_hit.push_back((Seconds() - t1) * 1e9 / conns);
      const double t2 = Seconds();
      for (int i = 0; i < conns; ++i) hits += table->Allows(vpc::kSgDirIngress, vpc::kProtoTcp, kGuestA + 100 + (i & 63), 5301);
      per_miss.push_back((Seconds() - t2) * 1e9 / conns);
      if (hits != static_cast<uint64_t>(conns)) return 1;
    }
    std::printf("%-6d %14.0f %14.1f %14.1f %9zu\n", n, Median(per_conn), Median(per_hit), Median(per_miss), tracked);
  }
  return 0;
}
