#!/usr/bin/env bash
# The body of `make test`: system deps, a throwaway PostgreSQL, lint, types, pytest.
# PostgreSQL and the SLURM test cluster are stopped whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

extras=(openssl chromium)
# the real-model tests: espeak-ng speaks test sentences, ffmpeg's drawtext needs a font
extras+=(espeak-ng fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf)
# tests/nat builds NATed network namespaces with a coturn relay: root, iptables and coturn
if [ "$(id -u)" -eq 0 ]; then extras+=(coturn:turnserver iptables); fi
# tests/slurm runs workers on a throwaway single-node SLURM cluster (root, slurm-wlm, munge)
if [ "$(id -u)" -eq 0 ]; then extras+=(slurm-wlm:slurmctld slurm-wlm:slurmd slurm-wlm:sbatch munge:munged); fi
scripts/ensure-system-deps.sh "${extras[@]}" || exit 1

pgdir=$(mktemp -d /tmp/rtc-annotator-pg.XXXXXX)
slurmdir=$(mktemp -d /tmp/rtc-annotator-slurm.XXXXXX)
trap 'scripts/test-postgres.sh stop "$pgdir"; scripts/test-slurm.sh stop "$slurmdir"' EXIT INT TERM
if url=$(scripts/test-postgres.sh start "$pgdir"); then
  export RTC_ANNOTATOR_TEST_PG_URL="$url"
  echo "test PostgreSQL: $url"
else
  echo "warning: could not start PostgreSQL; PostgreSQL tests fail under CI=true, skip otherwise" >&2
fi

if [ "$(id -u)" -eq 0 ] && conf=$(scripts/test-slurm.sh start "$slurmdir"); then
  export RTC_ANNOTATOR_TEST_SLURM_CONF="$conf"
  echo "test SLURM cluster: $conf"
else
  echo "warning: no SLURM test cluster (needs root, slurm-wlm, munge; see above); tests/slurm fail under CI=true, skip otherwise" >&2
fi

export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
status=0
echo "== ruff"; $PY -m ruff check rtc_annotator signaling tests scripts || status=1
echo "== mypy"; $PY -m mypy || status=1
echo "== pytest"; $PY -m pytest "$@" || status=1
exit $status
