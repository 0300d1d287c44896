#!/usr/bin/env bash
# Made the frozen transcript in this directory with keyceremony and kmslocal
# built from main at commit 5aa1006 (BIN=dir of those binaries), before the
# typed events and the new verifier: a 2-key ceremony with a 2-of-3 escrow
# whose kmslocal was killed while fetching the second key's import
# parameters, then resumed with the same config. The resume voids the first
# key's fetch-params event and fetches again, writing params-k1.json anew
# (the first one is set aside), so verify at 5aa1006 rejects --files (exit 6)
# while the void-aware verifier accepts it (see expect.txt).
set -euo pipefail
BIN=${BIN:?BIN=dir with keyceremony and kmslocal of main 5aa1006}
OUT=${OUT:?OUT=new output dir}
work=$(mktemp -d)
trap 'kill $kmspid 2>/dev/null || true; rm -rf "$work"' EXIT
export SOFTHSM2_CONF=$work/softhsm2.conf
mkdir -p "$work/tokens" "$OUT"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label frozen --pin 1234 --so-pin 5678 >/dev/null
startkms() {
  rm -f "$work/kms.addr"
  "$BIN/kmslocal" --addr 127.0.0.1:0 --state "$work/kms.json" --pool-size -1 --ready-file "$work/kms.addr" 2>>"$work/kms.log" &
  kmspid=$!
  for _ in $(seq 100); do [ -s "$work/kms.addr" ] && break; sleep 0.1; done
  export AWS_ENDPOINT_URL_KMS="http://$(cat "$work/kms.addr")"
}
export AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1
mkdir -p "$OUT/custodians"
for c in alice bob; do ssh-keygen -q -t ed25519 -N "" -C "$c" -f "$OUT/custodians/$c"; done
printf 'carol frozen passphrase, test only' >"$OUT/custodians/carol.passphrase"
cat >"$OUT/ceremony.yaml" <<YAML
ceremony:
  id: frozen-5aa1006
  operator: frozen-operator
  out_dir: evidence
token:
  label: frozen
  pin_env: KEYCEREMONY_PIN
  signing_key: frozen-transcript-signing
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_4096
keys:
  - label: k1
    create: true
    does_not_expire: true
  - label: k2
    create: true
    does_not_expire: true
escrow:
  threshold: 2
  custodians:
    - name: alice
      recipient: $(cat "$OUT/custodians/alice.pub")
    - name: bob
      recipient: $(cat "$OUT/custodians/bob.pub")
    - name: carol
      passphrase: true
      passphrase_file: custodians/carol.passphrase
YAML
cd "$OUT"
startkms
export KEYCEREMONY_PIN=1234
"$BIN/keyceremony" run --config ceremony.yaml >"$work/run1.log" 2>&1 &
runpid=$!
until grep -q '"step":"fetch-params"' evidence/transcript.jsonl 2>/dev/null; do kill -0 $runpid 2>/dev/null || { cat "$work/run1.log"; exit 1; }; sleep 0.005; done
kill -9 $kmspid
wait $runpid && { echo "first run did not fail" >&2; exit 1; } || true
startkms
"$BIN/keyceremony" run --config ceremony.yaml
"$BIN/keyceremony" verify --pubkey evidence/signing-key.pem --files evidence evidence/transcript.jsonl && echo "verify at 5aa1006: exit 0" || echo "verify at 5aa1006: exit $?"
