#!/usr/bin/env bash
# Installs what segue needs to build, run and test on Debian 12, skipping what is already there.
#   tools/scripts/install-deps.sh          to build and run
#   tools/scripts/install-deps.sh --test   and what only the tests use (a headless browser,
#                                          iproute2, a one-node Slurm, the model host's
#                                          Python packages, clang and libFuzzer)
set -euo pipefail
packages=(
  build-essential cmake pkg-config git
  libzmq3-dev libsodium-dev cppzmq-dev capnproto libcapnp-dev librocksdb-dev libyaml-cpp-dev
  libtorch-dev libopenblas0-pthread
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev ffmpeg
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libxxhash-dev libzstd-dev
  libgtest-dev libgmock-dev librapidcheck-dev clang-format
)
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium iproute2 curl slurm-wlm munge python3-torch python3-zmq python3-numpy
             python3-jsonschema
             clang libclang-rt-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "segue: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
