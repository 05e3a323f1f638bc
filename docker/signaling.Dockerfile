# rtc-annotator signaling server image (small: no GPU, no pipeline extras). Build from the
# repository root:
#   docker build -f docker/signaling.Dockerfile -t rtc-annotator-signaling:latest .
# It also carries the `rtc-annotator` command (the compose file's `api` service uses it for
# `rtc-annotator serve`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY rtc_annotator ./rtc_annotator
COPY signaling ./signaling
RUN pip install -c constraints.txt . && rm -rf /src

RUN useradd --create-home --uid 1000 signaling \
 && mkdir -p /var/lib/signaling \
 && chown signaling /var/lib/signaling
USER signaling
WORKDIR /var/lib/signaling
VOLUME ["/var/lib/signaling"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]

# Secrets come from the environment: SIGNALING_ADMIN_SECRET, SIGNALING_TURN_SECRET.
ENTRYPOINT ["python", "-m", "signaling"]
CMD ["--host", "0.0.0.0", "--port", "8765", "--state", "/var/lib/signaling/state.sqlite3"]
