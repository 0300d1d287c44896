#!/usr/bin/env bash
# Installs what keyceremony's build, tests and demo need on Debian, when absent:
# gcc (cgo for miekg/pkcs11), SoftHSM2 and opensc (the test HSM), NSS softokn
# with certutil and p11-kit (the second test module, see README "PKCS#11
# modules"), openssl and tmux, ssh-keygen and jq (independent checks in tests
# and the README).
set -euo pipefail
need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
[ -e /usr/lib/x86_64-linux-gnu/libsoftokn3.so ] || [ -e /usr/lib/aarch64-linux-gnu/libsoftokn3.so ] || need+=(libnss3)
command -v certutil >/dev/null || need+=(libnss3-tools)
command -v p11-kit >/dev/null || need+=(p11-kit)
ls /usr/lib/*/p11-kit-proxy.so >/dev/null 2>&1 || need+=(p11-kit-modules)
command -v gcc >/dev/null || need+=(gcc)
command -v openssl >/dev/null || need+=(openssl)
command -v tmux >/dev/null || need+=(tmux)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v jq >/dev/null || need+=(jq)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/deps.sh: run as root, or install yourself: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
