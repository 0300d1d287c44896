#!/usr/bin/env bash
# make demo: a complete ceremony on a throw-away SoftHSM token and the
# loopback KMS (bin/kmslocal), driven only through the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DEMO_DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/keyceremony-demo.XXXXXX")}
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
if [ -e "$DEMO_DIR/transcript.jsonl" ]; then
  echo "demo: $DEMO_DIR already holds a ceremony; a ceremony never overwrites evidence: choose a new DEMO_DIR" >&2
  exit 1
fi
hsmdir=$(mktemp -d "${TMPDIR:-/tmp}/keyceremony-softhsm.XXXXXX")
kmspid=
cleanup() {
  [ -n "$kmspid" ] && kill "$kmspid" 2>/dev/null && wait "$kmspid" 2>/dev/null || true
  rm -rf "$hsmdir"
}
trap cleanup EXIT

echo "== SoftHSM: a throw-away token in $hsmdir"
export SOFTHSM2_CONF=$hsmdir/softhsm2.conf
mkdir -p "$hsmdir/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$hsmdir/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label demo-ceremony --pin 1234 --so-pin 5678 >/dev/null

echo "== loopback KMS (a test server, not AWS)"
"$root/bin/kmslocal" --addr 127.0.0.1:0 --ready-file "$hsmdir/kms.addr" 2>"$DEMO_DIR/kmslocal.log" &
kmspid=$!
for _ in $(seq 100); do [ -s "$hsmdir/kms.addr" ] && break; sleep 0.1; done
[ -s "$hsmdir/kms.addr" ] || { echo "demo: kmslocal did not start; see $DEMO_DIR/kmslocal.log" >&2; exit 1; }
export AWS_ENDPOINT_URL_KMS="http://$(cat "$hsmdir/kms.addr")"
export AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
echo "   $AWS_ENDPOINT_URL_KMS"

echo "== escrow custodians: two SSH keys and a passphrase, any 2 of 3 recover"
mkdir -p "$hsmdir/custodians"
for c in alice bob; do
  ssh-keygen -q -t ed25519 -N "" -C "$c" -f "$hsmdir/custodians/$c"
done
export DEMO_CAROL_PASSPHRASE="carol demo passphrase, not for production"

cat >"$DEMO_DIR/ceremony.yaml" <<YAML
ceremony:
  id: demo-$(date -u +%Y%m%dT%H%M%SZ)
  operator: demo-operator
  out_dir: .
token:
  label: demo-ceremony
  pin_env: KEYCEREMONY_PIN
  signing_key: demo-transcript-signing
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: demo-payments
    create: true
    description: keyceremony demo key
    valid_for: 90d
escrow:
  threshold: 2
  armor: true
  custodians:
    - name: alice
      recipient: $(cat "$hsmdir/custodians/alice.pub")
    - name: bob
      recipient: $(cat "$hsmdir/custodians/bob.pub")
    - name: carol
      passphrase: true
      passphrase_env: DEMO_CAROL_PASSPHRASE
YAML

echo "== keyceremony run"
KEYCEREMONY_PIN=1234 "$root/bin/keyceremony" run --config "$DEMO_DIR/ceremony.yaml"

echo "== keyceremony verify"
"$root/bin/keyceremony" verify --pubkey "$DEMO_DIR/signing-key.pem" --files "$DEMO_DIR" "$DEMO_DIR/transcript.jsonl" | tee "$hsmdir/verify.out"
# What the witnesses write down at the table: the signer fingerprint and the
# seal words. Share checks and drills are pinned by them, not by a file.
fingerprint=$(sed -n 's/^OK: .* sealed by key \([0-9a-f]*\)$/\1/p' "$hsmdir/verify.out")
words=$(sed -n 's/^seal words: //p' "$hsmdir/verify.out")

echo "== the seal, checked by openssl alone"
openssl dgst -sha256 -verify "$DEMO_DIR/signing-key.pem" -signature "$DEMO_DIR/seal.sig" "$DEMO_DIR/seal.payload"

echo "== a custodian checks their share alone"
"$root/bin/keyceremony" escrow verify-share --share "$DEMO_DIR/share-1-alice.age" --identity "$hsmdir/custodians/alice" \
  --transcript "$DEMO_DIR/transcript.jsonl" --fingerprint "$fingerprint"

echo "== recovery drill: alice and bob recover into a scratch SoftHSM token, no KMS"
"$root/bin/keyceremony" recover --drill --escrow "$DEMO_DIR/escrow.json" \
  --share "$DEMO_DIR/share-1-alice.age" --share "$DEMO_DIR/share-2-bob.age" \
  --identity "$hsmdir/custodians/alice" --identity "$hsmdir/custodians/bob" \
  --transcript "$DEMO_DIR/transcript.jsonl" --seal-words "$words" --out "$DEMO_DIR/drill"

echo "== the imported key works: encrypt then decrypt through KMS"
arn=$(sed -n 's/^  "key_arn": "\(.*\)",$/\1/p' "$DEMO_DIR/bundle-demo-payments.json")
"$root/bin/keyceremony" check-key --key "$arn"

echo
echo "demo complete; the evidence is in $DEMO_DIR:"
ls -1 "$DEMO_DIR" | sed 's/^/  /'
