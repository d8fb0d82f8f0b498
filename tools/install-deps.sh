#!/usr/bin/env bash
# Installs the Debian packages Tide's tests and demo use, when the machine lacks them.
set -euo pipefail
packages=(git openssh-server openssh-client gnupg age prometheus curl docker-registry nginx)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: Debian packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services it installs; the tests start their own on loopback.
for svc in prometheus ssh docker-registry nginx; do $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
