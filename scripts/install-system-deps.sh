#!/usr/bin/env bash
# Install the Debian packages the server and its tests need, only if something is missing.
set -euo pipefail
declare -A binary_of=(
  [redis-server]=/usr/bin/redis-server
  [mariadb-server]=/usr/sbin/mariadbd
  [chromium]=/usr/bin/chromium
  [nginx]=/usr/sbin/nginx
  [wrk]=/usr/bin/wrk
  [fonts-wqy-microhei]=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
  [galera-4]=/usr/lib/galera/libgalera_smm.so
  [rsync]=/usr/bin/rsync
  [prometheus]=/usr/bin/promtool
)
missing=()
for package in "$@"; do
  [ -e "${binary_of[$package]:-/nonexistent}" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps the packages' own services from starting: we run our own on free ports.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
