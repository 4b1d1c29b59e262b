/** A private etcd cluster per test file (the logic is shared with the benchmarks: scripts/lib/etcd.mjs). */
export { startEtcd, type EtcdCluster, type EtcdClientCert, type EtcdMember, type EtcdOptions } from '../../scripts/lib/etcd.mjs';
