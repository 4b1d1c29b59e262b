// Types of etcd.mjs, for the TypeScript tests.
import type { ChildProcess } from 'node:child_process';

export interface EtcdClientCert {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  process: ChildProcess | undefined;
  /** Everything the member printed. */
  output: string;
}

export interface EtcdCluster {
  dir: string;
  members: EtcdMember[];
  /** Every member's client URL. */
  endpoints: string[];
  /** The CA and a client certificate for `user` (made on first use; CN = user). */
  clientCert(user: string): Promise<EtcdClientCert>;
  /** The daemon's fleet options for host `hostId` (its client certificate made on first use). */
  daemonArgs(hostId: string): Promise<string[]>;
  /** `etcdctl ARGS…` as `user` (default root) against every member; never rejects for a non-zero exit. */
  etcdctl(args: string[], user?: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** scripts/fleet-etcd-rbac.sh ARGS… as root (enable | host ID…); rejects on failure. */
  rbac(args: string[]): Promise<string>;
  /** The index of the member that is the raft leader now (by `etcdctl endpoint status`). */
  leader(): Promise<number>;
  /** Kill one member (SIGKILL by default) and wait for it to exit. */
  stopMember(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Start a stopped member again on its data directory; resolves once every member is healthy. */
  startMember(index: number): Promise<void>;
  stopAll(): Promise<void>;
  startAll(): Promise<void>;
  destroy(): Promise<void>;
}

export interface EtcdOptions {
  members?: 1 | 3;
  /** Run the members in this network namespace, listening on `host` (required with it). */
  netns?: string;
  host?: string;
  parent?: string;
}

export function startEtcd(options?: EtcdOptions): Promise<EtcdCluster>;
