# mailreleased in a container.
#
#   docker build -t mailreleased .
#   docker run -d --name mailreleased --stop-timeout 45 \
#     -v /srv/mailreleased/etc:/etc/mailreleased:ro \
#     -v mailreleased-state:/var/lib/mailreleased \
#     mailreleased
#
# The config comes from the /etc/mailreleased mount; nothing secret is baked
# into the image. Pass passwords as files in that mount (password_file) or
# as Docker secrets (password_file: /run/secrets/isp). Logs are JSON lines on
# standard error, which `docker logs` collects.
# --stop-timeout 45 leaves room for shutdown_grace (30 s by default), because
# Docker's own default of 10 s would kill an ATRN drain that is still finishing.
#
# No container engine runs in this project's CI: tests/service/test_dockerfile.py
# checks this file by reading it (non-root user, health check, no secrets).

FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAILRELEASED_CONFIG=/etc/mailreleased/mailreleased.yaml \
    MAILRELEASED_LOG_FORMAT=json

# A fixed UID and GID, so that volume ownership survives image rebuilds.
RUN groupadd --system --gid 10001 mailreleased \
 && useradd --system --uid 10001 --gid mailreleased --no-create-home \
      --home-dir /var/lib/mailreleased --shell /usr/sbin/nologin mailreleased \
 && install -d -o mailreleased -g mailreleased -m 0750 /var/lib/mailreleased /run/mailreleased \
 && install -d -m 0755 /etc/mailreleased

WORKDIR /src
COPY pyproject.toml README.md ./
COPY mailreleased ./mailreleased
# The metrics extra is included so that metrics work without a rebuild. Listen
# on 0.0.0.0:9466 to scrape from outside, because a container's 127.0.0.1 is
# reachable only from inside it.
RUN pip install '.[metrics]' && rm -rf /src
WORKDIR /var/lib/mailreleased

USER 10001:10001
VOLUME /var/lib/mailreleased
STOPSIGNAL SIGTERM

# status --check exits 1 when the daemon does not respond, misses scheduled
# runs, or a target had no success for longer than its alert_after.
HEALTHCHECK --interval=60s --timeout=15s --start-period=30s --retries=3 \
    CMD ["mailreleased", "status", "--check"]

CMD ["mailreleased", "run"]
