#!/usr/bin/env bash
# Make migration credentials for tests (docs/migration.md, "Transport"), with GnuTLS's
# certtool and psktool (gnutls-bin):
#   tls-creds.sh x509 DIR [NAME] [DAYS]  a CA (DIR/ca-cert.pem, ca-key.pem) and, signed
#       by it, a server pair for 127.0.0.1 / localhost and a client pair, QEMU's layout.
#       NAME: the CA's name (two CAs differ by it). DAYS < 0: the server and client
#       certificates expired that many days ago (their CA is valid). A CA already in
#       DIR (ca-cert.pem and ca-key.pem) signs the new pairs instead of a new one.
#   tls-creds.sh psk FILE [IDENTITY]     identity:hexkey, 32 random bytes.
set -euo pipefail
kind=$1 out=$2
case $kind in
psk)
  umask 077
  psktool -u "${3:-xkvm}" -p "$out" >/dev/null
  ;;
x509)
  name=${3:-xkvm test CA} days=${4:-30}
  mkdir -p "$out"
  umask 077
  t=$(mktemp -d "$out/.tmpl.XXXXXX")
  cat > "$t/ca" <<T
cn = "$name"
ca
cert_signing_key
expiration_days = 30
T
  if [ "$days" -lt 0 ]; then
    valid="activation_date = \"$(date -u -d "$((1 - days * 2)) days ago" '+%Y-%m-%d %H:%M:%S')\"
expiration_date = \"$(date -u -d "$((-days)) days ago" '+%Y-%m-%d %H:%M:%S')\""
  else
    valid="expiration_days = $days"
  fi
  cat > "$t/server" <<T
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
tls_www_server
encryption_key
signing_key
$valid
T
  cat > "$t/client" <<T
cn = "xkvm migration source"
tls_www_client
encryption_key
signing_key
$valid
T
  if [ ! -s "$out/ca-key.pem" ]; then
    certtool --generate-privkey --key-type ecdsa --outfile "$out/ca-key.pem" >/dev/null 2>&1
    certtool --generate-self-signed --load-privkey "$out/ca-key.pem" --template "$t/ca" \
             --outfile "$out/ca-cert.pem" >/dev/null 2>&1
  fi
  for role in server client; do
    certtool --generate-privkey --key-type ecdsa --outfile "$out/$role-key.pem" >/dev/null 2>&1
    certtool --generate-certificate --load-privkey "$out/$role-key.pem" \
             --load-ca-certificate "$out/ca-cert.pem" --load-ca-privkey "$out/ca-key.pem" \
             --template "$t/$role" --outfile "$out/$role-cert.pem" >/dev/null 2>&1
  done
  chmod 644 "$out"/*-cert.pem
  rm -rf "$t"
  ;;
*) echo "usage: tls-creds.sh x509 DIR [NAME] [DAYS] | psk FILE [IDENTITY]" >&2; exit 2 ;;
esac
