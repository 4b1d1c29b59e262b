/** `nitride peer …`: the other hosts of the VPC (underlay endpoint and public key). */
import { Command } from 'commander';
import { pathTo } from '../../api/control.js';
import { VPC_API, type AddPeerRequest, type DeletedPeer, type PeerInfo } from '../../api/vpc.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, renderFields, renderTable } from '../output.js';

export function peerCommand(): Command {
  const peer = new Command('peer').description('other nitride hosts the VPC reaches over the encrypted underlay');

  peer.addCommand(
    clientVerb(new Command('add').description('add a peer host and start the handshake with it'))
      .requiredOption('--name <name>', 'peer name (what `eni create --host` refers to)')
      .requiredOption('--endpoint <host:port>', 'its underlay address, numeric, e.g. 198.51.100.7:4789')
      .requiredOption('--public-key <base64>', 'its host public key (`nitride key show` there)')
      .option('--plaintext', 'send frames to it unencrypted (explicit opt-in, for an underlay that is already encrypted)')
      .action(async (options: ClientOptions & { name: string; endpoint: string; publicKey: string; plaintext?: boolean }) => {
        const body: AddPeerRequest = { name: options.name, endpoint: options.endpoint, publicKey: options.publicKey, ...(options.plaintext ? { plaintext: true } : {}) };
        const r = await clientOf(options).call<PeerInfo>('POST', VPC_API.peers, body);
        emit(options, r, (p) => renderFields({ name: p.name, endpoint: p.endpoint, 'public key': p.publicKey, plaintext: p.plaintext, session: p.session }));
      }),
  );

  peer.addCommand(
    clientVerb(new Command('list').description('list peers with their session state')).action(async (options: ClientOptions) => {
      const all = await clientOf(options).get<PeerInfo[]>(VPC_API.peers);
      emit(options, all, (rows) =>
        rows.length === 0
          ? 'no peers'
          : renderTable(rows, {
              name: (p) => p.name,
              endpoint: (p) => p.endpoint,
              session: (p) => p.session,
              'last rx': (p) => (p.lastRx ? new Date(p.lastRx).toISOString() : null),
              plaintext: (p) => p.plaintext,
              'public key': (p) => p.publicKey,
            }),
      );
    }),
  );

  peer.addCommand(
    clientVerb(new Command('delete').description('remove a peer (its sessions end; routes to its ENIs go)').argument('<name>', 'peer name')).action(
      async (name: string, options: ClientOptions) => {
        const r = await clientOf(options).call<DeletedPeer>('DELETE', pathTo(VPC_API.peer, { id: name }));
        emit(options, r, () => `deleted ${r.name}`);
      },
    ),
  );
  return peer;
}
