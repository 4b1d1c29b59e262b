/** `nitride key show`: this host's public key, for `nitride peer add --public-key` on the others. */
import { Command } from 'commander';
import { KEYS_API, type HostKey } from '../../api/keys.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit } from '../output.js';

export function keyCommand(): Command {
  const key = new Command('key').description("this host's VPC identity (X25519; the private key is stored only wrapped by the KMS)");
  key.addCommand(
    clientVerb(new Command('show').description('print the public key (base64)')).action(async (options: ClientOptions) => {
      const r = await clientOf(options).get<HostKey>(KEYS_API.hostKey);
      emit(options, r, (k) => k.publicKey);
    }),
  );
  return key;
}
