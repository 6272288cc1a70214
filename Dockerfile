# One image for every matrix-stack service; the command picks the service:
#   docker run ... ghcr.io/matrix-stack/matrix-stack notify
# Runs as a non-root user and works with a read-only root filesystem: the only writable path it
# needs is /var/lib/matrix-stack (the outbox and the bot's session), mount a volume there.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# The package and the charts it carries as package data: the wheel built from them is the runtime.
COPY matrix_stack ./matrix_stack
COPY charts ./charts
RUN python -m venv /opt/matrix-stack \
 && /opt/matrix-stack/bin/pip install . \
 && /opt/matrix-stack/bin/python -m compileall -q /opt/matrix-stack

FROM python:3.11-slim
LABEL org.opencontainers.image.title="matrix-stack" \
      org.opencontainers.image.description="Alert bridges into Matrix: Slack-compatible webhooks, Sentry, Alertmanager" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/matrix-stack /opt/matrix-stack
ENV PATH=/opt/matrix-stack/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 matrix-stack \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/matrix-stack --no-create-home matrix-stack \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/matrix-stack
USER 10001:10001
WORKDIR /var/lib/matrix-stack
VOLUME ["/var/lib/matrix-stack"]
EXPOSE 8080
CMD ["notify"]
