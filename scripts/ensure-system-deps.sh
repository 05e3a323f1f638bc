#!/usr/bin/env bash
# Make sure the system programs the tests and the demo need are present:
# PostgreSQL (server binaries) and ffmpeg. Installs them with apt-get when missing.
set -euo pipefail

need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
# extra arguments: "package" or "package:command" when the command is named otherwise,
# or "package:/absolute/file" for a package without a command (a font)
for extra in "$@"; do
  pkg=${extra%%:*}; cmd=${extra#*:}
  if [[ $cmd == /* ]]; then
    [ -e "$cmd" ] || need+=("$pkg")
  else
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
  fi
done

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# unique
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "ensure-system-deps: installing ${need[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null 2>&1 || { echo "ensure-system-deps: need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; }
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# policy-rc.d keeps the package from starting a system-wide cluster we do not use
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
