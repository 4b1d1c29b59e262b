#!/usr/bin/env bash
# etcd RBAC for a nitride fleet: each host authenticates with a client certificate whose CN is
# its host id, and may write only its own host record (/nitride/hosts/<id>) and the placement
# of its own ENIs (/nitride/enis/<id>/...); it reads the whole /nitride/ prefix and writes the
# shared model and allocation claims (vpcs, subnets, security groups, network ACLs, ips, macs).
# etcd enforces it: another host's credentials cannot overwrite a record or an ENI that is
# not theirs.
#
#   fleet-etcd-rbac.sh enable          create the root user (CN root, no password) and turn auth on
#   fleet-etcd-rbac.sh host ID...      a user and a role per host
#
# scripts/lib/etcd-rbac.mjs does the same in one process (benchmarks); keep the two in step.
# etcdctl is reached through its own environment, as root (the CN of ETCDCTL_CERT):
# ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY.
set -euo pipefail
export ETCDCTL_API=3
ctl() { etcdctl --command-timeout=10s "$@" >/dev/null; }
die() { echo "fleet-etcd-rbac: $*" >&2; exit 2; }

case "${1:-}" in
  enable)
    etcdctl --command-timeout=10s user get root >/dev/null 2>&1 || ctl user add root --no-password
    ctl user grant-role root root
    ctl auth enable
    ;;
  host)
    shift
    [ $# -gt 0 ] || die "usage: fleet-etcd-rbac.sh host ID..."
    for id in "$@"; do
      [[ "$id" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] || die "'$id' is not a host id"
      role="nitride-host-$id"
      etcdctl --command-timeout=10s role get "$role" >/dev/null 2>&1 || ctl role add "$role"
      ctl role grant-permission "$role" read /nitride/ --prefix
      ctl role grant-permission "$role" readwrite "/nitride/hosts/$id"
      ctl role grant-permission "$role" readwrite "/nitride/enis/$id/" --prefix
      for shared in vpcs subnets sgs acls ips macs; do ctl role grant-permission "$role" readwrite "/nitride/$shared/" --prefix; done
      etcdctl --command-timeout=10s user get "$id" >/dev/null 2>&1 || ctl user add "$id" --no-password
      ctl user grant-role "$id" "$role"
    done
    ;;
  *) die "usage: fleet-etcd-rbac.sh enable | host ID..." ;;
esac
