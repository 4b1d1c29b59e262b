/** A private one-node Ceph cluster per test file (the logic is shared with the benchmarks: scripts/lib/ceph.mjs). */
export { startCeph, type CephCluster } from '../../scripts/lib/ceph.mjs';
