#!/usr/bin/env bash
# Installs the Debian packages Kopa needs for a purpose, only those missing.
#   scripts/install-deps.sh run    build and run the appliance
#   scripts/install-deps.sh test   also the real peers the tests talk to
set -euo pipefail

purpose=${1:-run}

# Building: a C toolchain for aws-lc-sys; pkg-config for -sys crates.
run_pkgs=(gcc g++ make pkg-config ca-certificates)
# Tests: real peers (openssl s_client, curl, OpenLDAP slapd and its tools, oathtool for
# TOTP) and python3 for the benchmark driver.
test_pkgs=(openssl curl python3 procps slapd ldap-utils oathtool)

case "$purpose" in
  run) wanted=("${run_pkgs[@]}") ;;
  test|bench) wanted=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is missing: Kopa needs rustc/cargo >= 1.95 (install with rustup: https://rustup.rs)." >&2
  exit 1
fi
