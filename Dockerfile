# auth_service image: a venv built on Debian's python3 in a builder stage, copied into a
# small runtime with only python3 and CA certificates. Migrations run at start (entrypoint).
#
#   docker build -t auth-service .
#   podman build --format docker -t auth-service .   # OCI format (podman's default) drops HEALTHCHECK
#   docker run -p 127.0.0.1:8000:8000 auth-service            # embedded default (SQLite, dev key)
#
# Build-time pip settings (an index mirror, a proxy's CA) can be passed without landing in
# the image: --secret id=pipconf,src=pip.conf (mounted as /etc/pip.conf) and
# --secret id=pipcert,src=ca.pem (mounted as /etc/ssl/certs/build-pip-ca.pem).

FROM debian:bookworm-slim AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY auth_service ./auth_service
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf \
    --mount=type=secret,id=pipcert,target=/etc/ssl/certs/build-pip-ca.pem \
    python3 -m venv /opt/auth-service \
 && /opt/auth-service/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile . \
 && /opt/auth-service/bin/pip uninstall --yes --disable-pip-version-check pip setuptools wheel \
 && /opt/auth-service/bin/python -m compileall -q /opt/auth-service/lib

FROM debian:bookworm-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/auth-service \
        --shell /usr/sbin/nologin auth-service \
 && install -d -o auth-service -g auth-service -m 0700 /var/lib/auth-service
COPY --from=builder /opt/auth-service /opt/auth-service
COPY docker/entrypoint docker/healthcheck /usr/local/bin/

# Every setting is an AUTH_* variable (see README); secrets come from the environment or
# mounted files, e.g. AUTH_SIGNING_KEY_FILE=/run/secrets/signing_key.
ENV PATH=/opt/auth-service/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUTH_HOST=0.0.0.0 \
    AUTH_PORT=8000 \
    AUTH_DATA_DIR=/var/lib/auth-service \
    AUTH_WORKERS=1 \
    AUTH_MIGRATE_ON_START=true

USER 10001:10001
WORKDIR /var/lib/auth-service
VOLUME ["/var/lib/auth-service"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["healthcheck"]
ENTRYPOINT ["entrypoint"]
CMD ["serve"]
