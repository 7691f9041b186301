#!/usr/bin/env bash
# Installs the Debian packages Kopa needs for a purpose, only those missing.
#   scripts/install-deps.sh run    build and run the appliance
#   scripts/install-deps.sh test   also the real peers the tests talk to, and a Python
#                                  venv with the OpenID Connect relying party (Authlib)
#                                  and the SAML 2.0 service providers (pysaml2,
#                                  python3-saml) at ${KOPA_PYENV:-/opt/kopa-pyenv}
set -euo pipefail

purpose=${1:-run}

# Building: a C toolchain for aws-lc-sys; pkg-config for -sys crates.
run_pkgs=(gcc g++ make pkg-config ca-certificates)
# Tests: real peers (openssl s_client, curl, OpenLDAP slapd and its tools, oathtool for
# TOTP, xmlsec1 for XML signatures: pysaml2 signs and verifies by running it, and the
# tests check signatures with it), python3 for the benchmark driver and python3-venv for
# the test peers' venv, Chromium for the tests in a real browser, and prometheus for
# promtool, which checks the /metrics exposition.
test_pkgs=(openssl curl python3 python3-venv procps slapd ldap-utils oathtool xmlsec1 chromium
  prometheus)
# Python test peers (tests/peers/): Authlib as an OpenID Connect relying party, with
# joserfc (its JOSE library, imported directly); pysaml2 and python3-saml as SAML 2.0
# service providers; Playwright to drive Debian's Chromium (it never downloads a browser
# of its own: the peers launch /usr/bin/chromium); aiosmtpd as the SMTP server alert
# e-mails are delivered to. Pinned; the venv is rebuilt when this
# list changes.
# python3-saml signs with the xmlsec module, which refuses to load ("lxml & xmlsec
# libxml2 library version mismatch") unless lxml runs on the very libxml2 it was built
# with. Both come as binary wheels with libxml2 linked in, so the pins are a pair whose
# wheels carry the same libxml2 (xmlsec 1.3.17 and lxml 6.1.3: libxml2 2.14.6), and
# only wheels are taken for them: a build from source would link Debian's libxml2 and
# break the pair (no -dev packages are needed for that reason).
py_reqs=(authlib==1.9.10 joserfc==1.8.0 requests==2.34.2
  pysaml2==7.5.5 python3-saml==1.16.0 xmlsec==1.3.17 lxml==6.1.3 playwright==1.65.2
  aiosmtpd==1.4.6)
py_binary_only=xmlsec,lxml
# What the peers import: the venv is checked with it, before and after it is made.
py_check='import authlib, joserfc, requests, saml2, onelogin.saml2.auth, xmlsec, playwright, aiosmtpd'
# axe-core from npm, injected by the browser tests to check accessibility; kept in the
# venv's directory beside the Python peers.
npm_reqs=(axe-core@4.14.1)
# The portal's single-page app: Rust's wasm32 target and wasm-bindgen's CLI at exactly
# the version of the library (portal/ui/Cargo.toml pins it; STACK.md: no --locked).
wasm_bindgen_version=0.2.130

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

# The test peers' venv: skipped when its stamp lists exactly these requirements and its
# interpreter still imports what the peers use; otherwise made anew (only ever removing
# a venv).
if [ "$purpose" != run ]; then
  pyenv_dir=${KOPA_PYENV:-/opt/kopa-pyenv}
  stamp="$pyenv_dir/.kopa-requirements"
  if [ "$(cat "$stamp" 2>/dev/null)" != "${py_reqs[*]}" ] \
    || ! "$pyenv_dir/bin/python3" -c "$py_check" 2>/dev/null; then
    if [ -e "$pyenv_dir" ] && [ ! -f "$pyenv_dir/pyvenv.cfg" ]; then
      echo "$pyenv_dir exists and is not a Python venv; set KOPA_PYENV to another path" >&2
      exit 1
    fi
    echo "Setting up the test peers' Python venv in $pyenv_dir: ${py_reqs[*]}"
    rm -rf "$pyenv_dir"
    python3 -m venv "$pyenv_dir"
    "$pyenv_dir/bin/python3" -m pip install -q --disable-pip-version-check \
      --only-binary="$py_binary_only" "${py_reqs[@]}"
    "$pyenv_dir/bin/python3" -c "$py_check"
    echo "${py_reqs[*]}" >"$stamp"
  fi
  npm_stamp="$pyenv_dir/.kopa-npm"
  if [ "$(cat "$npm_stamp" 2>/dev/null)" != "${npm_reqs[*]}" ] \
    || [ ! -f "$pyenv_dir/node_modules/axe-core/axe.min.js" ]; then
    echo "Installing into $pyenv_dir from npm: ${npm_reqs[*]}"
    npm install --silent --no-audit --no-fund --prefix "$pyenv_dir" "${npm_reqs[@]}"
    echo "${npm_reqs[*]}" >"$npm_stamp"
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is missing: Kopa needs rustc/cargo >= 1.95 (install with rustup: https://rustup.rs)." >&2
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "Adding Rust's wasm32-unknown-unknown target (the portal UI)"
  rustup target add wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]; then
  echo "Installing wasm-bindgen-cli $wasm_bindgen_version (a few minutes, once)"
  cargo install -q wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
