/**
 * A host's name in the fleet: the CN of its etcd client certificate, the identity etcd
 * authenticates (and, with RBAC, authorizes) it as. The same name is its rbd lock holder name,
 * so the daemon config reads it too (without loading the etcd client).
 */
import { X509Certificate } from 'node:crypto';
import { UsageError, oneLine } from '../common/errors.js';
import { PEER_NAME_PATTERN } from '../api/vpc.js';

/** The CN of a PEM certificate, checked as a host id. */
export function hostIdOfCertificate(pem: Buffer, file: string): string {
  let subject: string;
  try {
    subject = new X509Certificate(pem).subject;
  } catch (err) {
    throw new UsageError(`--fleet-cert ${file} is not a PEM certificate: ${oneLine(err)}`);
  }
  const cn = /^CN=(.*)$/m.exec(subject)?.[1];
  if (!cn || !PEER_NAME_PATTERN.test(cn)) throw new UsageError(`--fleet-cert ${file}: its CN ('${cn ?? ''}') must be a host id (1-63 letters, digits, . _ - )`);
  return cn;
}
