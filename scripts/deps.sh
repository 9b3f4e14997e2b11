#!/bin/sh
# deps.sh - install the Debian packages samepage builds and tests with,
# when they are missing.  As root it installs them; as another user it
# names what is missing and fails.
set -eu

PKGS="meson ninja-build pkg-config gcc libxxhash-dev libcmocka-dev liburing-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "samepage: missing Debian packages:$missing" >&2
	echo "samepage: install them as root: apt-get install$missing" >&2
	exit 1
fi
echo "samepage: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends $missing >/dev/null; then
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
