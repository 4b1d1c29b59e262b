/**
 * The VPC's persistent state, `<state>/vpc.json`: the model (VPCs, subnets, ENIs), the netdev
 * kind of each local ENI, the peers, and the host key's KMS blob. The store holds no runtime:
 * callers change it, then {@link VpcStateStore.save} it; a model change whose save fails is
 * rolled back ({@link VpcStateStore.change}).
 */
import { z } from 'zod';
import { RuntimeError } from '../common/errors.js';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import { LOCAL_HOST_ID, type EniKind } from '../api/vpc.js';
import type { PeerRecord } from './manager.js';
import { VpcModel, type EniDirectory, type VpcState } from './model.js';

interface StateFile {
  version: 1;
  /** The KMS blob of the host private key (base64). */
  hostKeyBlob?: string;
  model: VpcState;
  kinds: Record<string, EniKind>;
  peers: PeerRecord[];
}

const StateFileSchema = z
  .object({
    version: z.literal(1),
    hostKeyBlob: z.string().optional(),
    model: z.unknown(),
    kinds: z.record(z.string(), z.enum(['tap', 'veth'])),
    peers: z.array(z.object({ name: z.string(), endpoint: z.string(), publicKey: z.string(), plaintext: z.boolean() }).strict()),
  })
  .strict();

export class VpcStateStore {
  private current = new VpcModel({ localHostId: LOCAL_HOST_ID });
  private kinds: Record<string, EniKind> = {};
  private readonly peerRecords = new Map<string, PeerRecord>();
  /** The KMS blob of the host private key (base64), once one was generated. */
  hostKeyBlob: string | undefined;
  /** The current model's tables (the model object is replaced when a failed save is rolled back). */
  readonly directory: EniDirectory = {
    lookupByIp: (vpcId, ip) => this.current.tables.lookupByIp(vpcId, ip),
    lookupByMac: (mac) => this.current.tables.lookupByMac(mac),
    lookupById: (id) => this.current.tables.lookupById(id),
    list: () => this.current.tables.list(),
  };

  constructor(private readonly file: string) {}

  get model(): VpcModel {
    return this.current;
  }

  async load(): Promise<void> {
    const raw = await readJsonFile<unknown>(this.file);
    if (raw === undefined) return;
    const parsed = StateFileSchema.safeParse(raw);
    if (!parsed.success) throw new RuntimeError(`${this.file}: invalid VPC state`, 'VPC_STATE');
    this.current = VpcModel.fromJSON(parsed.data.model, { localHostId: LOCAL_HOST_ID });
    this.kinds = parsed.data.kinds;
    this.hostKeyBlob = parsed.data.hostKeyBlob;
    for (const p of parsed.data.peers) this.peerRecords.set(p.name, p);
  }

  async save(): Promise<void> {
    const state: StateFile = {
      version: 1,
      ...(this.hostKeyBlob ? { hostKeyBlob: this.hostKeyBlob } : {}),
      model: this.current.toJSON(),
      kinds: this.kinds,
      peers: [...this.peerRecords.values()],
    };
    await writeFileAtomic(this.file, JSON.stringify(state, null, 2) + '\n');
  }

  /** Change the model and save it; the model is rolled back if the save fails. */
  async change<T>(fn: (model: VpcModel) => T): Promise<T> {
    const before = this.current.toJSON();
    const result = fn(this.current);
    try {
      await this.save();
    } catch (err) {
      this.current = VpcModel.fromJSON(before, { localHostId: LOCAL_HOST_ID });
      throw err;
    }
    return result;
  }

  /** Take a whole model, kinds and peers from elsewhere (the fleet's view); nothing is saved. */
  replace(model: VpcModel, kinds: Record<string, EniKind>, peers: PeerRecord[]): void {
    this.current = model;
    this.kinds = { ...kinds };
    this.peerRecords.clear();
    for (const p of peers) this.peerRecords.set(p.name, p);
  }

  /** The netdev kind of a local ENI (remote ENIs have none). */
  kind(eniId: string): EniKind | undefined {
    return this.kinds[eniId];
  }

  setKind(eniId: string, kind: EniKind | undefined): void {
    if (kind) this.kinds[eniId] = kind;
    else delete this.kinds[eniId];
  }

  peer(name: string): PeerRecord | undefined {
    return this.peerRecords.get(name);
  }

  peers(): PeerRecord[] {
    return [...this.peerRecords.values()];
  }

  setPeer(record: PeerRecord): void {
    this.peerRecords.set(record.name, record);
  }

  deletePeer(name: string): void {
    this.peerRecords.delete(name);
  }
}
