#!/usr/bin/env bash
# Certificates for a nitride fleet's etcd, made with openssl (EC P-256): one CA, a server
# certificate for the members (client and peer TLS; its SANs are the members' addresses) and a
# client certificate per etcd user, whose CN is the user: a host's id (what
# scripts/fleet-etcd-rbac.sh grants a role to and `nitride daemon --fleet-cert` identifies the
# host by), or root for the operator.
#
#   fleet-pki.sh DIR ca                    DIR/ca.crt, DIR/ca.key (kept if they exist)
#   fleet-pki.sh DIR server NAME ADDR...   DIR/NAME.crt, DIR/NAME.key: serverAuth+clientAuth, SANs
#                                          ADDR... (IP addresses or DNS names), 127.0.0.1, localhost
#   fleet-pki.sh DIR client CN             DIR/CN.crt, DIR/CN.key: clientAuth, subject CN=CN
#
# Valid for NITRIDE_PKI_DAYS days (default 365). Keys are written 0600.
set -euo pipefail
die() { echo "fleet-pki: $*" >&2; exit 2; }
usage="usage: fleet-pki.sh DIR ca | DIR server NAME ADDR... | DIR client CN"
[ $# -ge 2 ] || die "$usage"
dir=$1 verb=$2; shift 2
days=${NITRIDE_PKI_DAYS:-365}
export RANDFILE="$dir/.rnd"
mkdir -p "$dir"
umask 077

# issue NAME CN EXTENSIONS: a key and a certificate signed by the CA
issue() {
  local name=$1 cn=$2 ext="$dir/$1.ext"
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] || die "'$name' is not a certificate name"
  [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ] || die "no CA in $dir (run: fleet-pki.sh $dir ca)"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n%s\n' "$3" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days "$days" -out "$dir/$name.crt" -extfile "$ext" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
}

case "$verb" in
  ca)
    [ $# -eq 0 ] || die "$usage"
    [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ] && exit 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$days" -subj /CN=nitride-fleet-etcd-ca 2>/dev/null
    ;;
  server)
    [ $# -ge 2 ] || die "$usage"
    name=$1; shift
    sans=()
    for a in "$@" 127.0.0.1 localhost; do
      if [[ "$a" =~ ^[0-9.]+$ || "$a" == *:* ]]; then sans+=("IP:$a"); else sans+=("DNS:$a"); fi
    done
    issue "$name" "$name" "extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$(IFS=,; echo "${sans[*]}")"
    ;;
  client)
    [ $# -eq 1 ] || die "$usage"
    issue "$1" "$1" "extendedKeyUsage=clientAuth"
    ;;
  *) die "$usage" ;;
esac
