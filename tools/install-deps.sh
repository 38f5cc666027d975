#!/usr/bin/env bash
# Installs every system package hpctrain needs to build, test and run (Debian 12). Idempotent.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp zlib1g-dev libisal-dev
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libboost-log-dev libboost-program-options-dev nlohmann-json3-dev
  libgtest-dev googletest
  slurm-wlm munge libpmix2
  iproute2 procps  # the emulated nodes (ip netns, bridges) and the tests' pgrep; absent from minimal images
  python3-torch python3-h5py python3-numpy python3-sklearn python3-matplotlib python3-crcmod
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
