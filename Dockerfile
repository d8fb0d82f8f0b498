# The Tide controllers' image: one image, every controller (the chart runs `tide-<name>-controller`).
# Not built in CI (no container engine there); build with `docker build -t ghcr.io/tide-gitops/tide:<tag> .`
# Versions come from tools/versions.env and the pinned Go modules under tools/ (one source of truth).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG GO_IMAGE=golang:1.24-bookworm

# --- kustomize, built from the pinned module (tools/kustomize/go.mod), exactly as tools/build.sh does ---
FROM ${GO_IMAGE} AS kustomize
WORKDIR /src
COPY tools/kustomize/ ./
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod -buildvcs=false"
RUN go build -ldflags "-s -w" -o /out/kustomize sigs.k8s.io/kustomize/kustomize/v5 \
 && /out/kustomize version

# --- the Python distribution as a wheel ---
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml setup.py ./
COPY shared/ shared/
COPY controllers/ controllers/
COPY cli/ cli/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime ---
FROM ${PYTHON_IMAGE}
# gnupg: GitRepository verification and SOPS PGP keys; git/ssh are not needed (dulwich is pure Python).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --from=kustomize /out/kustomize /usr/local/bin/kustomize
ENV TIDE_KUSTOMIZE=/usr/local/bin/kustomize PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
# The chart sets runAsNonRoot with a read-only root filesystem; /tmp and /data are volumes.
RUN useradd --uid 65532 --home-dir /tmp --shell /usr/sbin/nologin tide
USER 65532:65532
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["tide-source-controller"]
