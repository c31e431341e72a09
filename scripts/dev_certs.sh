#!/bin/sh
# dev_certs.sh — a development CA and certificates for a local vecshard
# cluster (docs/security.md, "Turning TLS on"). Not for production: the
# keys are unencrypted files and the CA key sits next to them.
#
#   scripts/dev_certs.sh DIR [NAME...]
#
# Writes into DIR (created):
#   ca.pem, ca.key                  a new self-signed CA (10 years, EC P-256)
#   NAME.pem, NAME.key              one certificate per NAME (default: node,
#                                   router, client), signed by the CA, valid
#                                   for 825 days, for both TLS server and
#                                   client use, with subject alternative names
#                                   DNS:NAME, DNS:localhost, IP:127.0.0.1, IP:::1
#                                   and the names in $VS_CERT_SANS (e.g.
#                                   "DNS:*.vecshard-node.vecshard.svc,IP:10.0.0.5").
# An existing CA in DIR is reused, so running it again adds certificates
# signed by the same CA (or, with an existing NAME, renews that one).
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [NAME...]" >&2
    exit 2
fi
dir=$1
shift
[ $# -gt 0 ] || set -- node router client
command -v openssl >/dev/null || { echo "$0: openssl is not installed (make deps)" >&2; exit 1; }
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=vecshard dev CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in "$@"; do
    case $name in
        *[!A-Za-z0-9_.-]*|'') echo "$0: bad name \"$name\" ([A-Za-z0-9_.-]+)" >&2; exit 2 ;;
    esac
    sans="DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1"
    [ -z "${VS_CERT_SANS:-}" ] || sans="$sans,$VS_CERT_SANS"
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=$sans" > "$ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
    rm -f "$ext" "$dir/$name.csr"
done
chmod 644 "$dir"/*.pem
echo "certificates in $dir: ca.pem $(for n in "$@"; do printf '%s.pem ' "$n"; done)"
