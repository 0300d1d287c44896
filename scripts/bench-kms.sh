#!/usr/bin/env bash
# make bench-kms N=1000 [CLI_N=30] [LATENCY=20ms] [PARALLEL=32] [TOKEN_PARALLEL=8] [TOKEN_DIR=/dev/shm]
#
# Side by side against one bin/kmslocal started with an injected round-trip
# latency and a wrapping-key pool filled before timing and never refilled
# (a refill would take the CPU both sides run on; a real KMS's does not):
#   (a) keyceremony run for N keys (SoftHSM token, 2-of-3 escrow to SSH
#       ed25519 custodians, RSAES_OAEP_SHA_1 wrapped on the token, RSA_2048);
#   (b) AWS's documented CLI flow, one key after another, for CLI_N keys:
#       aws kms create-key --origin EXTERNAL, get-parameters-for-import,
#       openssl rand + openssl pkeyutl (RSA-OAEP SHA-256), import-key-material
#       (default: 30 keys, or N if fewer; about 2 s each).
# Prints both per-key times (the CLI flow's spread too), the ratio,
# keyceremony's per-key split by step, its peak RSS (GNU time), the load
# average and kmslocal's own CPU time during each side. Everything lives in a
# temp dir, removed after.
set -euo pipefail

N=${N:-100}
CLI_N=${CLI_N:-$((N < 30 ? N : 30))}
LATENCY=${LATENCY:-20ms}
PARALLEL=${PARALLEL:-32}
BIN=${BIN:-bin}

for tool in softhsm2-util ssh-keygen jq openssl /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench-kms: $tool is missing: run make deps" >&2; exit 1; }
done
AWS=$(command -v aws || true)
[ "$CLI_N" -eq 0 ] || [ -n "$AWS" ] || { echo "bench-kms: no aws on PATH for the CLI flow (pip install awscli, or CLI_N=0)" >&2; exit 1; }

dir=$(mktemp -d /tmp/keyceremony-bench-kms.XXXXXX)
tokens=
kms_pid=
cleanup() {
	[ -z "$kms_pid" ] || kill "$kms_pid" 2>/dev/null || true
	rm -rf "$dir" "$tokens"
}
trap cleanup EXIT

# A throw-away SoftHSM token, its object store in TOKEN_DIR (default: beside
# the evidence, on the same disk). SoftHSM rewrites an object file (truncate,
# write) many times per key it creates; on a file system that discards freed
# blocks at once (ext4 -o discard) that costs tens of milliseconds per key,
# which a real HSM does not: TOKEN_DIR=/dev/shm measures keyceremony without it.
tokens=${TOKEN_DIR:-$dir}/keyceremony-bench-tokens.$$
mkdir -p "$tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$tokens" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF=$dir/softhsm2.conf
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
export KEYCEREMONY_PIN=1234

# One kmslocal for both, its pool filled for every GetParametersForImport.
pool=$((N + CLI_N + 2))
"$BIN/kmslocal" --addr 127.0.0.1:0 --ready-file "$dir/kms.addr" --latency "$LATENCY" \
	--pool-size "$pool" --pool-specs RSA_2048 --pool-fill --pool-no-refill 2>"$dir/kms.log" &
kms_pid=$!
echo "bench-kms: filling kmslocal's pool with $pool RSA-2048 wrapping keys (not timed)..."
while [ ! -s "$dir/kms.addr" ]; do
	kill -0 "$kms_pid" 2>/dev/null || { cat "$dir/kms.log" >&2; exit 1; }
	sleep 0.2
done
url=http://$(cat "$dir/kms.addr")
kms_cpu() { awk '{print $14 + $15}' "/proc/$kms_pid/stat"; }
export AWS_ENDPOINT_URL_KMS=$url AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 \
	AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_CONFIG_FILE=/dev/null \
	AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true

# (a) keyceremony: N keys, 2-of-3 escrow.
for c in alice bob carol; do ssh-keygen -q -t ed25519 -N '' -C "$c" -f "$dir/$c"; done
{
	printf 'ceremony: {id: bench, operator: bench, out_dir: %s}\n' "$dir/out"
	printf 'token: {label: bench%s}\n' "${TOKEN_PARALLEL:+, parallel: $TOKEN_PARALLEL}"
	printf 'kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048, parallel: %s}\n' "$PARALLEL"
	printf 'keys:\n'
	for i in $(seq 1 "$N"); do printf '  - {label: bench-%05d, create: true, does_not_expire: true}\n' "$i"; done
	printf 'escrow:\n  threshold: 2\n  custodians:\n'
	for c in alice bob carol; do printf '    - {name: %s, recipient: "%s"}\n' "$c" "$(cat "$dir/$c.pub")"; done
} >"$dir/ceremony.yaml"
echo "bench-kms: keyceremony run, $N keys, --latency $LATENCY, parallel $PARALLEL..."
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
kms_cpu0=$(kms_cpu)
start=$(date +%s.%N)
/usr/bin/time -v -o "$dir/time.txt" "$BIN/keyceremony" run --config "$dir/ceremony.yaml" >"$dir/run.out" 2>"$dir/run.err" ||
	{ tail -20 "$dir/run.err" >&2; exit 1; }
end=$(date +%s.%N)
kc_total=$(echo "$end - $start" | bc -l)
kms_cpu1=$(kms_cpu)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")

# Per-step wall time from the run's "[i/n] done in Xs" lines.
declare -A step
while IFS=$'\t' read -r title secs; do step[$title]=$secs; done < <(
	awk '/^\[[0-9]+\/[0-9]+\] done in / {sub(/s:.*/, "", $4); printf "%s\t%s\n", last, $4; next}
	     /^\[[0-9]+\/[0-9]+\] / {last=$0; sub(/^\[[0-9]+\/[0-9]+\] /, "", last)}' "$dir/run.err")
sum() { local t=0; for k in "$@"; do t=$(echo "$t + ${step[$k]:-0}" | bc -l); done; echo "$t"; }
hsm=$(sum "Open the token and log in" "Generate key material on the token" "Seal the transcript on the token")
esc=$(sum "Check the escrow custodians" "Escrow the keys to the custodians")
wrp=$(sum "Wrap the key material for KMS")
kms=$(sum "Create or check the KMS keys" "Fetch KMS import parameters" "Import the wrapped material into KMS" "Check the keys in KMS")

# (b) AWS's documented CLI flow, one key after another.
cli_total=0
if [ "$CLI_N" -gt 0 ]; then
	echo "bench-kms: AWS CLI flow, $CLI_N keys one after another..."
	w=$dir/cli
	mkdir -p "$w"
	cli_load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	start=$(date +%s.%N)
	for i in $(seq 1 "$CLI_N"); do
		t0=$(date +%s.%N)
		id=$("$AWS" kms create-key --endpoint-url "$url" --origin EXTERNAL --query KeyMetadata.KeyId --output text)
		"$AWS" kms get-parameters-for-import --endpoint-url "$url" --key-id "$id" --wrapping-algorithm RSAES_OAEP_SHA_256 \
			--wrapping-key-spec RSA_2048 --output json >"$w/params.json"
		jq -r .PublicKey "$w/params.json" | openssl enc -d -base64 -A -out "$w/WrappingPublicKey.bin"
		jq -r .ImportToken "$w/params.json" | openssl enc -d -base64 -A -out "$w/ImportToken.bin"
		openssl rand -out "$w/PlaintextKeyMaterial.bin" 32
		openssl pkeyutl -encrypt -in "$w/PlaintextKeyMaterial.bin" -out "$w/EncryptedKeyMaterial.bin" \
			-inkey "$w/WrappingPublicKey.bin" -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep \
			-pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
		"$AWS" kms import-key-material --endpoint-url "$url" --key-id "$id" --encrypted-key-material "fileb://$w/EncryptedKeyMaterial.bin" \
			--import-token "fileb://$w/ImportToken.bin" --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null
		rm -f "$w/PlaintextKeyMaterial.bin"
		echo "1000 * ($(date +%s.%N) - $t0)" | bc -l >>"$dir/cli-keys.txt"
	done
	end=$(date +%s.%N)
	cli_total=$(echo "$end - $start" | bc -l)
	cli_load_after=$(cut -d' ' -f1-3 /proc/loadavg)
	kms_cpu2=$(kms_cpu)
fi

ms() { echo "scale=2; 1000 * $1 / $2" | bc -l; }
ticks() { echo "scale=2; $1 / $(getconf CLK_TCK)" | bc -l; }
echo
echo "bench-kms: N=$N (CLI flow: $CLI_N), kmslocal --latency $LATENCY, pool pre-filled and not refilled, keyceremony --parallel $PARALLEL, token.parallel ${TOKEN_PARALLEL:-default}, token store in $(df --output=fstype "$tokens" | tail -1) ${TOKEN_DIR:-beside the evidence}, $(nproc) CPUs"
printf '  keyceremony:  %8.2f ms/key  (%.1f s for %d keys, peak RSS %d MiB, load average before/after: %s / %s; kmslocal CPU meanwhile %.1f s)\n' \
	"$(ms "$kc_total" "$N")" "$kc_total" "$N" "$((rss_kib / 1024))" "$load_before" "$load_after" "$(ticks $((kms_cpu1 - kms_cpu0)))"
printf '    split per key: HSM %.2f ms, escrow %.2f ms, wrap %.2f ms, KMS %.2f ms\n' \
	"$(ms "$hsm" "$N")" "$(ms "$esc" "$N")" "$(ms "$wrp" "$N")" "$(ms "$kms" "$N")"
for title in "${!step[@]}"; do
	printf '      %-45s %8.2f ms/key\n' "$title" "$(ms "${step[$title]}" "$N")"
done | sort
if [ "$CLI_N" -gt 0 ]; then
	cli_ms=$(ms "$cli_total" "$CLI_N")
	# The spread of the CLI flow's per-key times: the Python CLI's start-up
	# dominates it and swings with the machine's other load.
	read -r cli_min cli_med cli_max < <(sort -g "$dir/cli-keys.txt" | awk '{v[NR]=$1} END {printf "%s %s %s\n", v[1], v[int((NR+1)/2)], v[NR]}')
	printf '  AWS CLI flow: %8.2f ms/key  (%.1f s for %d keys; per key min %.0f, median %.0f, max %.0f ms; load average before/after: %s / %s; kmslocal CPU meanwhile %.1f s)\n' \
		"$cli_ms" "$cli_total" "$CLI_N" "$cli_min" "$cli_med" "$cli_max" "$cli_load_before" "$cli_load_after" "$(ticks $((kms_cpu2 - kms_cpu1)))"
	printf '  ratio: keyceremony is %.1fx the CLI flow'"'"'s throughput (%.1fx against the CLI flow'"'"'s fastest key)\n' \
		"$(echo "$cli_ms / $(ms "$kc_total" "$N")" | bc -l)" "$(echo "$cli_min / $(ms "$kc_total" "$N")" | bc -l)"
fi
