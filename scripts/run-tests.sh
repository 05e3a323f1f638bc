#!/usr/bin/env bash
# The body of `make test`: system deps, a throwaway PostgreSQL, lint, types, pytest.
# PostgreSQL is stopped whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

extras=(openssl chromium)
# the real-model tests: espeak-ng speaks test sentences, ffmpeg's drawtext needs a font
extras+=(espeak-ng fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf)
# tests/nat builds NATed network namespaces with a coturn relay: root, iptables and coturn
if [ "$(id -u)" -eq 0 ]; then extras+=(coturn:turnserver iptables); fi
scripts/ensure-system-deps.sh "${extras[@]}" || exit 1

pgdir=$(mktemp -d /tmp/rtc-annotator-pg.XXXXXX)
trap 'scripts/test-postgres.sh stop "$pgdir"' EXIT INT TERM
if url=$(scripts/test-postgres.sh start "$pgdir"); then
  export RTC_ANNOTATOR_TEST_PG_URL="$url"
  echo "test PostgreSQL: $url"
else
  echo "warning: could not start PostgreSQL; PostgreSQL tests fail under CI=true, skip otherwise" >&2
fi

export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
status=0
echo "== ruff"; $PY -m ruff check rtc_annotator signaling tests scripts || status=1
echo "== mypy"; $PY -m mypy || status=1
echo "== pytest"; $PY -m pytest "$@" || status=1
exit $status
