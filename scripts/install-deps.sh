#!/bin/sh
# Install the system packages the build needs, when they are missing.
# As root it installs them with apt-get; otherwise it names what is missing and fails.
set -eu
pkgs="build-essential cmake pkg-config liburing-dev libxxhash-dev liblz4-dev libcriterion-dev"
[ "${1:-}" = "--bench" ] && pkgs="$pkgs fio"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q $missing >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
else
	echo "missing packages:$missing" >&2
	echo "run as root, or: sudo apt-get install -y$missing" >&2
	exit 1
fi
