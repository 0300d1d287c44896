#!/usr/bin/env bash
# Made the frozen RSA-sealed transcript in this directory with keyceremony,
# keyceremony-crashtest (go build -tags crashtest) and kmslocal built from
# the seal branch (BIN=dir of those binaries): a 1-key ceremony on SoftHSM
# with token.seal_algorithm: rsa-3072 and a 2-of-2 escrow, killed when the
# transcript held 7 lines (its kms-key event not yet under a checkpoint),
# then resumed with the same config: the resume trusts the RSA checkpoint
# before it, voids the kms-key event and adopts the key. Its seal and
# checkpoints are RSA 3072 PKCS#1 v1.5 SHA-256 signatures (see expect.txt).
set -euo pipefail
BIN=${BIN:?BIN=dir with keyceremony, keyceremony-crashtest and kmslocal}
OUT=${OUT:?OUT=new output dir}
work=$(mktemp -d)
trap 'kill $kmspid 2>/dev/null || true; rm -rf "$work"' EXIT
export SOFTHSM2_CONF=$work/softhsm2.conf
mkdir -p "$work/tokens" "$OUT"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label frozen --pin 1234 --so-pin 5678 >/dev/null
rm -f "$work/kms.addr"
"$BIN/kmslocal" --addr 127.0.0.1:0 --state "$work/kms.json" --ready-file "$work/kms.addr" 2>>"$work/kms.log" &
kmspid=$!
for _ in $(seq 100); do [ -s "$work/kms.addr" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL_KMS="http://$(cat "$work/kms.addr")"
export AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1
mkdir -p "$OUT/custodians"
for c in alice bob; do ssh-keygen -q -t ed25519 -N "" -C "$c" -f "$OUT/custodians/$c"; done
cat >"$OUT/ceremony.yaml" <<YAML
ceremony:
  id: frozen-rsa-seal
  operator: frozen-operator
  out_dir: evidence
token:
  label: frozen
  pin_env: KEYCEREMONY_PIN
  signing_key: frozen-rsa-signing
  seal_algorithm: rsa-3072
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: k1
    create: true
    does_not_expire: true
escrow:
  threshold: 2
  custodians:
    - name: alice
      recipient: $(cat "$OUT/custodians/alice.pub")
    - name: bob
      recipient: $(cat "$OUT/custodians/bob.pub")
YAML
cd "$OUT"
export KEYCEREMONY_PIN=1234
KEYCEREMONY_CRASHTEST_KILL_AT_LINE=7 "$BIN/keyceremony-crashtest" run --config ceremony.yaml >"$work/run1.log" 2>&1 && { echo "first run was not killed" >&2; exit 1; } || true
"$BIN/keyceremony" run --config ceremony.yaml
"$BIN/keyceremony" verify --pubkey evidence/signing-key.pem --files evidence evidence/transcript.jsonl
openssl dgst -sha256 -verify evidence/signing-key.pem -signature evidence/seal.sig evidence/seal.payload
