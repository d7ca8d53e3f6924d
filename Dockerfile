# The image the Helm chart runs (API, operator and engine share it). The control plane is not in
# it: inside a real cluster the simulator uses that cluster (the chart can add KWOK for fake nodes).

# Karpenter's KWOK cloud provider, through our wrapper module (karpenter/), built as the local
# simulator builds it (k8sim/local/build.py ensure_karpenter): sigs.k8s.io/karpenter v1.15.0 says
# `go 1.26.9`, newer than the Go the project builds with, so the go command fetches the pinned
# toolchain from the module proxy for this build. Static (CGO off), so it runs in the slim image.
ARG GO_IMAGE=golang:1.26.8-bookworm
FROM ${GO_IMAGE} AS karpenter
ARG KARPENTER_VERSION=v1.15.0
ENV GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0
WORKDIR /build
COPY karpenter/go.mod karpenter/go.sum ./
RUN go mod download
COPY karpenter/*.go ./
RUN go build -trimpath -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=${KARPENTER_VERSION}" \
        -o /out/karpenter-kwok .

FROM python:3.11-slim
# A normal (not editable) install: the cluster's data ships inside the k8sim package. The sources
# are built from /src and removed, so no folder named like a package shadows the installed one.
COPY pyproject.toml README.md /src/
COPY k8sim /src/k8sim
COPY api /src/api
COPY operator /src/operator
COPY engine /src/engine
ENV PYTHONDONTWRITEBYTECODE=1
RUN pip install --no-cache-dir /src && rm -rf /src && useradd --create-home --uid 10001 k8sim
# Run by the chart's Karpenter Deployment (karpenter.enabled); its CRDs ship in the chart.
COPY --from=karpenter /out/karpenter-kwok /usr/local/bin/karpenter-kwok
WORKDIR /home/k8sim
USER 10001
EXPOSE 6360 6381
CMD ["python", "-m", "k8sim_api"]
