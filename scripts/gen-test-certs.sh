#!/usr/bin/env bash
# A test CA and certificates for TLS tests and `npm start -- --tls`, made with openssl into DIR
# (never committed: keys are made fresh each time). Everything is valid for 127.0.0.1 and
# localhost.
#
#   ca.crt                         the test CA (ca.key signs the rest)
#   server.crt/.key                members and the gateway (serverAuth + clientAuth, CN=server)
#   peer.crt/.key                  member-to-member (serverAuth + clientAuth, CN=peer)
#   client.crt/.key                a client (clientAuth, CN=client)
#   root.crt/.key                  a client whose CN is etcd's root user (CN-as-user tests)
#   expired.crt/.key               a client certificate that expired in 2020
#   revoked.crt/.key + ca.crl      a client certificate, and the CA's CRL that revokes it
#   other-ca.crt, wrong-ca.crt/.key a client certificate from a CA the servers do not trust
#
# Usage: scripts/gen-test-certs.sh DIR
set -euo pipefail
dir=${1:?usage: gen-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
export OPENSSL_CONF=/dev/null
sans="subjectAltName=DNS:localhost,IP:127.0.0.1"

# The CA's database, for dated certificates (expired) and the CRL.
mkdir -p ca-db
: >ca-db/index.txt
echo 1000 >ca-db/serial
echo 1000 >ca-db/crlnumber
cat >ca-db/ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = ca-db
database = \$dir/index.txt
serial = \$dir/serial
crlnumber = \$dir/crlnumber
new_certs_dir = \$dir
certificate = ca.crt
private_key = ca.key
default_md = sha256
default_crl_days = 3650
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
CNF

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$1.crt"
}

leaf() { # name CN eku signing-ca
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/O=etcd-ts test/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" -CAcreateserial -days 825 -sha256 \
    -extfile <(printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
      "extendedKeyUsage=$3" "$sans") -out "$1.crt" 2>/dev/null
  rm -f "$1.csr"
}

ca ca "/O=etcd-ts test/CN=etcd-ts test CA"
leaf server server serverAuth,clientAuth ca
leaf peer peer serverAuth,clientAuth ca
leaf client client clientAuth ca
leaf root root clientAuth ca

# Dated by the CA itself: openssl x509 cannot issue a certificate valid only in the past.
ca_sign() { # name CN extra-args...
  local name=$1 cn=$2
  shift 2
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/O=etcd-ts test/CN=$cn" -out "$name.csr"
  openssl ca -batch -config ca-db/ca.cnf -extensions client_ext -notext -in "$name.csr" \
    -out "$name.crt" "$@" 2>/dev/null
  rm -f "$name.csr"
}
ca_sign expired expired -startdate 20200101000000Z -enddate 20200102000000Z
ca_sign revoked revoked -days 825
openssl ca -batch -config ca-db/ca.cnf -revoke revoked.crt 2>/dev/null
openssl ca -batch -config ca-db/ca.cnf -gencrl -out ca.crl 2>/dev/null

ca other-ca "/O=someone else/CN=untrusted CA"
leaf wrong-ca wrong-ca clientAuth other-ca
rm -f other-ca.key ./*.srl
