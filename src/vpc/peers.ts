/**
 * Peers: the other hosts' daemons, each a name, a numeric underlay endpoint and a pinned
 * public key. A peer's name is how the model (an ENI's host), the handshake and the API refer
 * to it; the engine's numeric peer id never leaves the runtime.
 */
import { ConflictError, UsageError } from '../common/errors.js';
import { decodeKey, encodeKey, type PeerHandshakeStatus } from './handshake.js';
import { LOCAL_HOST_ID, PEER_NAME_PATTERN, type PeerInfo } from '../api/vpc.js';
import { parseEndpoint } from '../common/endpoint.js';
import type { PeerRecord } from './manager.js';

export interface NewPeer {
  name: string;
  endpoint: string;
  publicKey: string;
  plaintext?: boolean;
}

/** A new peer's record (key in canonical form), checked against this host and the peers there are. */
export function newPeerRecord(input: NewPeer, existing: readonly PeerRecord[]): PeerRecord {
  if (!PEER_NAME_PATTERN.test(input.name)) throw new UsageError(`peer name '${input.name}' must be 1-63 letters, digits, . _ - (starting with a letter or digit)`);
  if (input.name === LOCAL_HOST_ID) throw new UsageError(`'${LOCAL_HOST_ID}' names this host; choose another peer name`);
  if (existing.some((p) => p.name === input.name)) throw new ConflictError(`peer ${input.name} already exists`);
  parseEndpoint(input.endpoint, 'endpoint', { numeric: true });
  const publicKey = encodeKey(decodeKey(input.publicKey));
  for (const p of existing) {
    if (p.publicKey === publicKey) throw new ConflictError(`public key already belongs to peer ${p.name}`);
    if (p.endpoint === input.endpoint) throw new ConflictError(`endpoint ${input.endpoint} already belongs to peer ${p.name}`);
  }
  return { name: input.name, endpoint: input.endpoint, publicKey, plaintext: input.plaintext ?? false };
}

/** A peer's session as the API shows it; 'unknown' when the runtime does not know the peer (the VPC is down). */
export function sessionState(status: PeerHandshakeStatus | undefined): PeerInfo['session'] {
  if (!status) return 'unknown';
  return status.current ? 'established' : status.handshaking ? 'handshaking' : 'none';
}
