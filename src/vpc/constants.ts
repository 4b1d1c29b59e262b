/**
 * Wire constants of the VPC: every protocol number the control plane reads or writes, in one
 * place, with where it comes from. Nothing here is configurable.
 */

// ---------------------------------------------------------------------------------------------
// Ethernet II (IEEE 802.3 with an EtherType ≥ 0x0600 instead of a length)
// ---------------------------------------------------------------------------------------------

/** Destination MAC, source MAC, EtherType. No 802.1Q tag: guests on a tap do not send them. */
export const ETHERNET_HEADER_BYTES = 14;
export const MAC_BYTES = 6;
/** Smallest EtherType value; smaller values are 802.3 lengths, not protocol numbers. */
export const ETHERTYPE_MIN = 0x0600;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';

/**
 * The VPC's virtual gateway MAC: what the "VPC router" (subnet base + 1) and the DNS address
 * (base + 2) resolve to, and the source of every frame the VPC itself sends a guest: ARP and
 * DHCP replies, nothing else (an oversize frame is dropped and counted, without an ICMP error).
 * Locally administered (bit 1 of the first octet set), unicast (bit 0 clear); bytes 1–3 spell
 * "nit" in ASCII. The same on every host and in every
 * VPC, as AWS's gateway MAC is fixed per host: a guest never needs to learn a new one after a
 * migration. Auto-assigned ENI MACs never take this value.
 */
export const GATEWAY_MAC = '02:6e:69:74:00:01';

// ---------------------------------------------------------------------------------------------
// ARP (RFC 826), IPv4 over Ethernet only
// ---------------------------------------------------------------------------------------------

export const ARP_BYTES = 28;
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = ETHERTYPE_IPV4;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

// ---------------------------------------------------------------------------------------------
// IPv4 (RFC 791), UDP (RFC 768)
// ---------------------------------------------------------------------------------------------

export const IPV4_MIN_HEADER_BYTES = 20;
export const IPV4_MAX_HEADER_BYTES = 60;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAGMENT_OFFSET_MASK = 0x1fff;
/** TTL of packets the VPC originates (Linux's default). */
export const IPV4_DEFAULT_TTL = 64;

export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;

export const UDP_HEADER_BYTES = 8;

// ---------------------------------------------------------------------------------------------
// DHCPv4 (RFC 2131 message, RFC 2132 options, RFC 3396 long options)
// ---------------------------------------------------------------------------------------------

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** Fixed BOOTP part (op … file) before the magic cookie. */
export const BOOTP_FIXED_BYTES = 236;
export const DHCP_MAGIC_COOKIE = 0x63825363;
/** Fixed part + cookie: the smallest DHCP message. */
export const DHCP_MIN_BYTES = BOOTP_FIXED_BYTES + 4;
/** RFC 1542 §3.4 / RFC 2131 §2: relay agents and old clients expect BOOTP messages of at least 300 bytes. */
export const BOOTP_MIN_MESSAGE_BYTES = 300;
/** Largest DHCP message a client must accept without option 57 (RFC 2131 §2: 576-byte IP datagram). */
export const DHCP_DEFAULT_MAX_MESSAGE_BYTES = 576;
export const BOOTP_OP_REQUEST = 1;
export const BOOTP_OP_REPLY = 2;
/** `flags` bit: the client cannot receive unicast before it has an address (RFC 2131 §2). */
export const BOOTP_FLAG_BROADCAST = 0x8000;

/** Option 53 values. */
export const DHCP_DISCOVER = 1;
export const DHCP_OFFER = 2;
export const DHCP_REQUEST = 3;
export const DHCP_DECLINE = 4;
export const DHCP_ACK = 5;
export const DHCP_NAK = 6;
export const DHCP_RELEASE = 7;
export const DHCP_INFORM = 8;

/** Option codes (RFC 2132 unless noted). */
export const DHCP_OPT_PAD = 0;
export const DHCP_OPT_SUBNET_MASK = 1;
export const DHCP_OPT_ROUTER = 3;
export const DHCP_OPT_DNS_SERVERS = 6;
export const DHCP_OPT_HOSTNAME = 12;
export const DHCP_OPT_DOMAIN_NAME = 15;
export const DHCP_OPT_INTERFACE_MTU = 26;
export const DHCP_OPT_BROADCAST_ADDRESS = 28;
export const DHCP_OPT_REQUESTED_IP = 50;
export const DHCP_OPT_LEASE_TIME = 51;
export const DHCP_OPT_OVERLOAD = 52;
export const DHCP_OPT_MESSAGE_TYPE = 53;
export const DHCP_OPT_SERVER_ID = 54;
export const DHCP_OPT_PARAMETER_LIST = 55;
export const DHCP_OPT_MESSAGE = 56;
export const DHCP_OPT_MAX_MESSAGE_SIZE = 57;
export const DHCP_OPT_RENEWAL_TIME = 58;
export const DHCP_OPT_REBINDING_TIME = 59;
export const DHCP_OPT_VENDOR_CLASS_ID = 60;
export const DHCP_OPT_CLIENT_ID = 61;
export const DHCP_OPT_END = 255;

/** Smallest interface MTU a DHCP server may hand out (RFC 2132 §5.1: 68). */
export const DHCP_MIN_MTU = 68;

// A VPC's guest MTU (option 26): VPC_DEFAULT_MTU and its bounds are the API's (src/api/vpc.ts).

/** The underlay MTU a daemon assumes unless told (`--vpc-underlay-mtu`): plain Ethernet. */
export const UNDERLAY_DEFAULT_MTU = 1500;

// ---------------------------------------------------------------------------------------------
// Underlay: UDP datagrams between nitride daemons. The layout follows WireGuard's
// (u8 type, 3 reserved zero bytes, then little-endian fields); see handshake.ts.
// ---------------------------------------------------------------------------------------------

export const UNDERLAY_HANDSHAKE_INITIATION = 1;
export const UNDERLAY_HANDSHAKE_RESPONSE = 2;
/** Reserved for a WireGuard-style cookie reply (load-based DoS mitigation); not sent yet. */
export const UNDERLAY_COOKIE_REPLY = 3;
/** `u8 4 | u8 flags (UNDERLAY_DATA_FLAG_CSUM_PARTIAL or 0) | 2 zero | u32 receiver index LE | u64 counter LE | AES-256-GCM ciphertext | 16-byte tag`. */
export const UNDERLAY_DATA = 4;
/** Unencrypted frame between daemons (only when encryption is explicitly not enforced). */
export const UNDERLAY_PLAINTEXT_DATA = 5;

export const UNDERLAY_INITIATION_BYTES = 148;
export const UNDERLAY_RESPONSE_BYTES = 92;
export const UNDERLAY_COOKIE_REPLY_BYTES = 64;
export const UNDERLAY_DATA_HEADER_BYTES = 16;
export const UNDERLAY_DATA_TAG_BYTES = 16;
/** `u8 5 | 3 zero`, then the frame. */
export const UNDERLAY_PLAINTEXT_HEADER_BYTES = 4;

/**
 * What carrying a guest frame of MTU bytes adds on the underlay's IP path: the frame's Ethernet
 * header, the data message's header and tag, and the UDP and IP headers. A VPC of MTU m needs
 * an underlay MTU of m + this (1420 + 74 = 1494 ≤ 1500; 9001 + 74 = 9075). The native engine
 * checks VPC_DEFAULT_MTU's sum at compile time.
 */
export const UNDERLAY_OVERHEAD_IPV4 = ETHERNET_HEADER_BYTES + UNDERLAY_DATA_HEADER_BYTES + UNDERLAY_DATA_TAG_BYTES + 8 + 20;
export const UNDERLAY_OVERHEAD_IPV6 = UNDERLAY_OVERHEAD_IPV4 + 20;

/**
 * Data message flag (header byte 1, inside the AEAD's associated data, so authenticated): the
 * frame's TCP/UDP checksum field holds only the pseudo-header sum, as in a Linux
 * CHECKSUM_PARTIAL packet. A segment the sending engine cut from a guest's GSO super-frame (or
 * a guest frame that was itself CHECKSUM_PARTIAL) travels so: nobody sums its payload; the
 * receiving engine coalesces it without verifying and hands it to the guest with a
 * virtio_net_hdr NEEDS_CSUM. Sent only to a peer that announced UNDERLAY_CAP_CSUM_PARTIAL in
 * the session's handshake: older daemons drop data messages with a nonzero reserved byte.
 */
export const UNDERLAY_DATA_FLAG_CSUM_PARTIAL = 0x01;

/**
 * Capabilities a daemon announces in the handshake's mac2 field (initiation and response): a
 * u32 LE bit set in its first 4 bytes, the other 12 zero. WireGuard's mac2 is a cookie MAC; this
 * handshake sends no cookies and older daemons send 16 zero bytes and never check it, so to
 * them it is invisible, and from them it reads as "no capabilities". Not covered by mac1 or the
 * Noise transcript: altering it can only make two daemons fall back to the old behaviour, or
 * make a sender's marked datagrams be dropped (what an on-path attacker can do anyway); every
 * mark itself is authenticated per datagram.
 */
export const UNDERLAY_CAP_CSUM_PARTIAL = 0x01;
/** What this version announces. */
export const UNDERLAY_CAPABILITIES = UNDERLAY_CAP_CSUM_PARTIAL;
