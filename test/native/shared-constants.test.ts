/**
 * The one source of every constant the native addon shares with the TypeScript side is the
 * TypeScript: this test renders native/src/shared_constants.h from it and fails when the
 * committed header differs. After changing one of these constants, regenerate the header with
 * `./scripts/test.sh test/native/shared-constants.test.ts -u` and rebuild the addon.
 */
import { describe, expect, it } from 'vitest';
import { NbdCmd, NbdCmdFlag, NbdHeaderSize, NbdLimits, NbdMagic, NbdReplyFlag, NbdReplyType } from '../../src/nbd/constants.js';
import {
  DHCP_CLIENT_PORT,
  DHCP_MIN_MTU,
  DHCP_SERVER_PORT,
  ETHERNET_HEADER_BYTES,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_VLAN,
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  UNDERLAY_DATA,
  UNDERLAY_DATA_FLAG_CSUM_PARTIAL,
  UNDERLAY_DATA_HEADER_BYTES,
  UNDERLAY_DATA_TAG_BYTES,
  UNDERLAY_PLAINTEXT_DATA,
  UNDERLAY_PLAINTEXT_HEADER_BYTES,
} from '../../src/vpc/constants.js';
import { DEFAULT_HANDSHAKE_TIMERS, KEY_BYTES } from '../../src/vpc/handshake.js';
import { BUCKET_DEPTH_SECONDS, IO_COUNT_UNIT_BYTES } from '../../src/api/volumes.js';
import { ENI_ALLOWANCE_DEPTH_SECONDS, VPC_DEFAULT_MTU, VPC_MAX_MTU, VPC_POLL_US_DEFAULT, VPC_POLL_US_MAX } from '../../src/api/vpc.js';
import {
  CT_DEFAULT_MAX_FLOWS,
  CT_ICMP_S,
  CT_TCP_CLOSING_S,
  CT_TCP_ESTABLISHED_S,
  CT_TCP_HALF_OPEN_S,
  CT_UDP_S,
  CT_UDP_STREAM_S,
  SG_DIR_EGRESS,
  SG_DIR_INGRESS,
  SG_ENTRY_BYTES,
  SG_PROTO_ALL,
} from '../../src/vpc/sg-table.js';
import { NACL_ACTION_ALLOW, NACL_ACTION_DENY } from '../../src/vpc/nacl-table.js';

/** C++ name, C++ type, value, the TypeScript it comes from (for the reader of the header), written in hex. */
type Constant = [name: string, type: string, value: number, from: string, hex?: 'hex'];

const NBD: Constant[] = [
  ['kRequestMagic', 'uint32_t', NbdMagic.REQUEST, 'NbdMagic.REQUEST', 'hex'],
  ['kSimpleReplyMagic', 'uint32_t', NbdMagic.SIMPLE_REPLY, 'NbdMagic.SIMPLE_REPLY', 'hex'],
  ['kStructuredReplyMagic', 'uint32_t', NbdMagic.STRUCTURED_REPLY, 'NbdMagic.STRUCTURED_REPLY', 'hex'],
  ['kCmdRead', 'uint16_t', NbdCmd.READ, 'NbdCmd.READ'],
  ['kCmdWrite', 'uint16_t', NbdCmd.WRITE, 'NbdCmd.WRITE'],
  ['kCmdDisc', 'uint16_t', NbdCmd.DISC, 'NbdCmd.DISC'],
  ['kCmdFlagDf', 'uint16_t', NbdCmdFlag.DF, 'NbdCmdFlag.DF'],
  ['kReplyFlagDone', 'uint16_t', NbdReplyFlag.DONE, 'NbdReplyFlag.DONE'],
  ['kReplyTypeNone', 'uint16_t', NbdReplyType.NONE, 'NbdReplyType.NONE'],
  ['kReplyTypeOffsetData', 'uint16_t', NbdReplyType.OFFSET_DATA, 'NbdReplyType.OFFSET_DATA'],
  ['kRequestBytes', 'size_t', NbdHeaderSize.REQUEST, 'NbdHeaderSize.REQUEST'],
  ['kSimpleReplyBytes', 'size_t', NbdHeaderSize.SIMPLE_REPLY, 'NbdHeaderSize.SIMPLE_REPLY'],
  ['kChunkHeaderBytes', 'size_t', NbdHeaderSize.STRUCTURED_REPLY, 'NbdHeaderSize.STRUCTURED_REPLY'],
  ['kMaxForwarded', 'size_t', NbdLimits.MAX_IN_FLIGHT, 'NbdLimits.MAX_IN_FLIGHT'],
  ['kMaxPayload', 'uint64_t', NbdLimits.MAX_PAYLOAD, 'NbdLimits.MAX_PAYLOAD'],
  ['kMaxWriteDiscard', 'uint64_t', NbdLimits.MAX_WRITE_DISCARD, 'NbdLimits.MAX_WRITE_DISCARD'],
];

const VPC: Constant[] = [
  ['kMsgData', 'uint8_t', UNDERLAY_DATA, 'UNDERLAY_DATA'],
  ['kMsgPlaintext', 'uint8_t', UNDERLAY_PLAINTEXT_DATA, 'UNDERLAY_PLAINTEXT_DATA'],
  ['kDataHeaderBytes', 'size_t', UNDERLAY_DATA_HEADER_BYTES, 'UNDERLAY_DATA_HEADER_BYTES'],
  ['kTagBytes', 'size_t', UNDERLAY_DATA_TAG_BYTES, 'UNDERLAY_DATA_TAG_BYTES'],
  ['kPlaintextHeaderBytes', 'size_t', UNDERLAY_PLAINTEXT_HEADER_BYTES, 'UNDERLAY_PLAINTEXT_HEADER_BYTES'],
  ['kDataFlagCsumPartial', 'uint8_t', UNDERLAY_DATA_FLAG_CSUM_PARTIAL, 'UNDERLAY_DATA_FLAG_CSUM_PARTIAL', 'hex'],
  ['kKeyBytes', 'size_t', KEY_BYTES, 'KEY_BYTES (handshake.ts)'],
  ['kDefaultRekeySeconds', 'uint64_t', DEFAULT_HANDSHAKE_TIMERS.rekeyAfterSeconds, 'DEFAULT_HANDSHAKE_TIMERS.rekeyAfterSeconds (handshake.ts)'],
  ['kEthHeader', 'size_t', ETHERNET_HEADER_BYTES, 'ETHERNET_HEADER_BYTES'],
  ['kEtherIpv4', 'uint16_t', ETHERTYPE_IPV4, 'ETHERTYPE_IPV4', 'hex'],
  ['kEtherArp', 'uint16_t', ETHERTYPE_ARP, 'ETHERTYPE_ARP', 'hex'],
  ['kEtherIpv6', 'uint16_t', ETHERTYPE_IPV6, 'ETHERTYPE_IPV6', 'hex'],
  ['kEtherVlan', 'uint16_t', ETHERTYPE_VLAN, 'ETHERTYPE_VLAN', 'hex'],
  ['kProtoIcmp', 'uint8_t', IP_PROTO_ICMP, 'IP_PROTO_ICMP'],
  ['kProtoTcp', 'uint8_t', IP_PROTO_TCP, 'IP_PROTO_TCP'],
  ['kProtoUdp', 'uint8_t', IP_PROTO_UDP, 'IP_PROTO_UDP'],
  ['kDhcpServerPort', 'uint16_t', DHCP_SERVER_PORT, 'DHCP_SERVER_PORT'],
  ['kDhcpClientPort', 'uint16_t', DHCP_CLIENT_PORT, 'DHCP_CLIENT_PORT'],
  ['kMinMtu', 'uint32_t', DHCP_MIN_MTU, 'DHCP_MIN_MTU'],
  ['kDefaultVpcMtu', 'uint32_t', VPC_DEFAULT_MTU, 'VPC_DEFAULT_MTU (api/vpc.ts)'],
  ['kMaxMtu', 'uint32_t', VPC_MAX_MTU, 'VPC_MAX_MTU (api/vpc.ts)'],
  ['kSgEntryBytes', 'size_t', SG_ENTRY_BYTES, 'SG_ENTRY_BYTES (sg-table.ts)'],
  ['kSgDirIngress', 'uint8_t', SG_DIR_INGRESS, 'SG_DIR_INGRESS (sg-table.ts)'],
  ['kSgDirEgress', 'uint8_t', SG_DIR_EGRESS, 'SG_DIR_EGRESS (sg-table.ts)'],
  ['kSgProtoAll', 'uint8_t', SG_PROTO_ALL, 'SG_PROTO_ALL (sg-table.ts)'],
  ['kNaclActionDeny', 'uint8_t', NACL_ACTION_DENY, 'NACL_ACTION_DENY (nacl-table.ts)'],
  ['kNaclActionAllow', 'uint8_t', NACL_ACTION_ALLOW, 'NACL_ACTION_ALLOW (nacl-table.ts)'],
  ['kCtTcpEstablishedS', 'uint32_t', CT_TCP_ESTABLISHED_S, 'CT_TCP_ESTABLISHED_S (sg-table.ts)'],
  ['kCtTcpHalfOpenS', 'uint32_t', CT_TCP_HALF_OPEN_S, 'CT_TCP_HALF_OPEN_S (sg-table.ts)'],
  ['kCtTcpClosingS', 'uint32_t', CT_TCP_CLOSING_S, 'CT_TCP_CLOSING_S (sg-table.ts)'],
  ['kCtUdpS', 'uint32_t', CT_UDP_S, 'CT_UDP_S (sg-table.ts)'],
  ['kCtUdpStreamS', 'uint32_t', CT_UDP_STREAM_S, 'CT_UDP_STREAM_S (sg-table.ts)'],
  ['kCtIcmpS', 'uint32_t', CT_ICMP_S, 'CT_ICMP_S (sg-table.ts)'],
  ['kCtDefaultMaxFlows', 'uint32_t', CT_DEFAULT_MAX_FLOWS, 'CT_DEFAULT_MAX_FLOWS (sg-table.ts)'],
  ['kPollMaxUs', 'uint32_t', VPC_POLL_US_DEFAULT, 'VPC_POLL_US_DEFAULT (api/vpc.ts)'],
  ['kPollMaxLimitUs', 'uint32_t', VPC_POLL_US_MAX, 'VPC_POLL_US_MAX (api/vpc.ts)'],
];

const QOS: Constant[] = [
  ['kIoCountUnitBytes', 'uint64_t', IO_COUNT_UNIT_BYTES, 'IO_COUNT_UNIT_BYTES'],
  ['kBucketDepthSeconds', 'double', BUCKET_DEPTH_SECONDS, 'BUCKET_DEPTH_SECONDS'],
  ['kAllowanceDepthSeconds', 'double', ENI_ALLOWANCE_DEPTH_SECONDS, 'ENI_ALLOWANCE_DEPTH_SECONDS (vpc.ts)'],
];

function namespaceBlock(name: string, source: string, constants: Constant[]): string {
  const lines = constants.map(([cpp, type, value, from, hex]) => `constexpr ${type} ${cpp} = ${hex ? `0x${value.toString(16)}` : value};  // ${from}`);
  return [`// ${source}`, `namespace ${name} {`, ...lines, `}  // namespace ${name}`].join('\n');
}

function renderHeader(): string {
  return [
    '// GENERATED by test/native/shared-constants.test.ts from the TypeScript constants: do not',
    '// edit. Change the TypeScript, then run',
    '// `./scripts/test.sh test/native/shared-constants.test.ts -u` and rebuild the addon.',
    '// Every constant the addon shares with the TypeScript side: wire formats both sides speak',
    '// and limits one side keeps for the other.',
    '#pragma once',
    '',
    '#include <cstddef>',
    '#include <cstdint>',
    '',
    'namespace nitride {',
    '',
    namespaceBlock('nbd', 'src/nbd/constants.ts', NBD),
    '',
    namespaceBlock('vpc', 'src/vpc/constants.ts unless noted', VPC),
    '',
    namespaceBlock('qos', 'src/api/volumes.ts unless noted', QOS),
    '',
    '}  // namespace nitride',
    '',
  ].join('\n');
}

describe('constants shared with the native addon', () => {
  it('native/src/shared_constants.h is generated from the TypeScript (regenerate with -u)', async () => {
    await expect(renderHeader()).toMatchFileSnapshot('../../native/src/shared_constants.h');
  });

  it('every value is an integer its C++ type holds', () => {
    const max: Record<string, number> = { uint8_t: 0xff, uint16_t: 0xffff, uint32_t: 0xffffffff, size_t: Number.MAX_SAFE_INTEGER, uint64_t: Number.MAX_SAFE_INTEGER };
    for (const [name, type, value] of [...NBD, ...VPC]) {
      expect(Number.isInteger(value) && value >= 0 && value <= max[type]!, `${name} = ${value} as ${type}`).toBe(true);
    }
  });
});
