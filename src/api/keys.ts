/**
 * This host's VPC identity: `GET /v1/vpc/key` → HostKey (503 while the VPC is down). The private
 * key never leaves the daemon (it is stored wrapped by the KMS).
 */

export const KEYS_API = {
  hostKey: '/v1/vpc/key',
} as const;

export interface HostKey {
  /** X25519 public key, base64: what `peer add --public-key` takes on the other hosts. */
  publicKey: string;
}
