# One image for both components, `zeta-operator` and `zeta-router`; the chart and manifests/ set the command.
#   docker build -t ghcr.io/zeta-dev/zeta:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

WORKDIR /src
COPY pyproject.toml README.md ./
COPY zeta_operator ./zeta_operator
RUN pip install . && rm -rf /src

# The user the chart's securityContext runs as (runAsUser 65532, read-only root filesystem, /tmp an emptyDir).
RUN useradd --uid 65532 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin zeta
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080

CMD ["zeta-router", "--help"]
