#!/usr/bin/env bash
# update-key.sh DIR [--name NAME] [--days N]: make the update-signing key pair that bundles are signed
# with (docs/updates.md, "Keys"). Run it once, on the machine that builds releases, and keep DIR offline
# (an encrypted disk, a safe): whoever holds signing.key can update every box built with its keyring.
# It is separate from every site CA: a site's provisioning material cannot sign an update.
#
#   DIR/ca.key       the update CA's key: only to issue a new signing certificate (0600)
#   DIR/keyring.pem  the update CA's certificate: baked into every image (/etc/rauc/keyring.pem)
#   DIR/signing.key  the signing key (0600), and DIR/signing.crt its certificate, issued by the CA with
#                    extendedKeyUsage codeSigning (RAUC's check-purpose=codesign on the box) and
#                    emailProtection (the default S/MIME purpose of `rauc bundle` and `rauc info` on a
#                    build machine without a system.conf)
#
# ECDSA P-256, SHA-256. Both certificates start a year before today, as the site's do: a Raspberry Pi
# boots with its clock at the image's build date until the hub's time reaches it. The CA lives 20 years,
# the signing certificate --days (default 10 years). An existing DIR is never overwritten; with
# --renew-signing, only a new signing key and certificate are issued by the existing CA (images keep
# their keyring).
set -euo pipefail
dir=${1:?usage: update-key.sh DIR [--name NAME] [--days N] [--renew-signing]}
shift
name='Outpost update signing' days=3650 renew=0
while (($# > 0)); do
  case $1 in
    --name) name=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --renew-signing) renew=1; shift ;;
    *) echo "update-key.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ((renew)); then
  [[ -f $dir/ca.key && -f $dir/keyring.pem ]] || { echo "update-key.sh: --renew-signing needs $dir/ca.key and keyring.pem" >&2; exit 2; }
elif [[ -e $dir/keyring.pem || -e $dir/signing.key ]]; then
  echo "update-key.sh: $dir already holds an update key: not overwriting it (--renew-signing issues a new signing certificate)" >&2
  exit 2
fi
umask 077
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date -u -d '-365 days' +%Y%m%d%H%M%SZ)
# `openssl ca` is the one openssl command that sets notBefore (-startdate); it needs a tiny database.
touch "$work/index.txt"
cat >"$work/ca.cnf" <<CNF
[ca]
default_ca = update_ca
[update_ca]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
organizationName = optional
[ca_ext]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signing_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning, emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl rand -hex 16 >"$work/serial"
if ((!renew)); then
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
  openssl req -new -key "$dir/ca.key" -subj "/O=Outpost/CN=$name CA" -out "$work/ca.csr"
  openssl ca -batch -config "$work/ca.cnf" -selfsign -keyfile "$dir/ca.key" -in "$work/ca.csr" \
    -startdate "$start" -days $((20 * 365)) -extensions ca_ext -notext -out "$dir/keyring.pem" 2>/dev/null
fi
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/signing.key.new"
openssl req -new -key "$dir/signing.key.new" -subj "/O=Outpost/CN=$name" -out "$work/signing.csr"
openssl ca -batch -config "$work/ca.cnf" -cert "$dir/keyring.pem" -keyfile "$dir/ca.key" -in "$work/signing.csr" \
  -startdate "$start" -days $((days + 365)) -extensions signing_ext -notext -out "$dir/signing.crt.new" 2>/dev/null
mv "$dir/signing.key.new" "$dir/signing.key"
mv "$dir/signing.crt.new" "$dir/signing.crt"
chmod 0644 "$dir/keyring.pem" "$dir/signing.crt"
openssl verify -CAfile "$dir/keyring.pem" "$dir/signing.crt" >/dev/null
echo "update-key: $dir: keyring.pem (into every image), signing.key + signing.crt (sign bundles), ca.key (keep offline)"
echo "update-key: keyring SHA-256 fingerprint $(openssl x509 -in "$dir/keyring.pem" -noout -fingerprint -sha256 | cut -d= -f2)"
