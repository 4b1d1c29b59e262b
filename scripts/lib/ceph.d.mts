// Types of ceph.mjs, for the TypeScript tests.
export interface CephCluster {
  dir: string;
  /** DIR/ceph.conf (client.admin's keyring beside it). */
  conf: string;
  monAddr: string;
  /** The pool 'rbd', replica size 1. */
  pool: string;
  /** Client id: 'admin'. */
  id: string;
  rbd(...args: string[]): Promise<string>;
  ceph(...args: string[]): Promise<string>;
  stop(): Promise<unknown>;
  /** Stops only the daemons of one kind ('osd': the data path goes, the mon stays). */
  stopDaemons(kind: 'osd' | 'mon' | 'mgr'): Promise<unknown>;
  resume(): Promise<unknown>;
  destroy(): Promise<void>;
}
export function startCeph(options?: { parent?: string; osdBytes?: number; monAddr?: string }): Promise<CephCluster>;
