#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing.
set -euo pipefail
# wordnet: METEOR's WordNet 3.0; gcc + zlib headers: mappy (minimap2) builds from source;
# ncbi-blast+: blastn / makeblastdb for the blastn reference lookup (evaluate/baselines.py)
PKGS=(wordnet-base wordnet-sense-index build-essential zlib1g-dev ncbi-blast+)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing apt packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
