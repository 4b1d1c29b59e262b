/**
 * The host identity: an X25519 key pair whose private key is a KMS data key. Only the KMS's
 * wrapped blob is stored (in the VPC state file); the key is unwrapped at every start of the
 * runtime, which wipes it when it stops.
 */
import { RuntimeError } from '../common/errors.js';
import type { KeyProvider } from '../kms/provider.js';
import type { Sodium } from '../kms/sodium.js';
import type { Logger } from '../log/logger.js';
import { clamp, publicKeyOf, type KeyPair } from './handshake.js';
import type { VpcStateStore } from './state-store.js';

const HOST_KEY_CONTEXT = { purpose: 'host-key' };

/** The host key pair: the stored blob unwrapped, or a new key generated and its blob saved first. */
export async function loadHostKey(sodium: Sodium, kms: KeyProvider, store: Pick<VpcStateStore, 'hostKeyBlob' | 'save'>, log: Logger): Promise<KeyPair> {
  let privateKey: Buffer;
  if (store.hostKeyBlob) {
    privateKey = (await kms.decrypt(Buffer.from(store.hostKeyBlob, 'base64'), HOST_KEY_CONTEXT)).plaintext;
  } else {
    const generated = await kms.generateDataKey(undefined, HOST_KEY_CONTEXT, { bytes: 32 });
    privateKey = generated.plaintext;
    store.hostKeyBlob = generated.ciphertextBlob.toString('base64');
    try {
      await store.save();
    } catch (err) {
      store.hostKeyBlob = undefined;
      sodium.memzero(privateKey);
      throw err;
    }
    log.info('host key generated (private key stored only wrapped by the KMS)');
  }
  if (privateKey.length !== 32) throw new RuntimeError(`host key from the KMS has ${privateKey.length} bytes, not 32`, 'VPC_HOST_KEY');
  clamp(privateKey);
  return { privateKey, publicKey: publicKeyOf(sodium, privateKey) };
}
