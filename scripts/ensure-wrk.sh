#!/usr/bin/env bash
# The HTTP benchmark drives the server with Debian's wrk (a C load generator that costs the
# server little). Install it when missing and this user may; quiet when it is there.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk for the HTTP benchmark…" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
else
  echo "install wrk (Debian package) to run the HTTP benchmark" >&2
  exit 1
fi
