# syntax=docker/dockerfile:1
# embedd on CPUs: ONNX Runtime's CPU build, no GPU needed.
#
# Build: docker build -t embedd:cpu .
#        docker build --build-arg MODELS="all-minilm-l6-v2-q8" -t embedd:cpu-q8 .
# Run:   docker run --rm -p 50051:50051 -p 8080:8080 -p 9090:9090 embedd:cpu
#        docker run --rm embedd:cpu embed "hello"
#        docker run --rm embedd:cpu version      # runtime found, models in the cache
# deploy/compose.yaml runs it with Redis, Milvus, Prometheus and Grafana;
# deploy/k8s/embedd-*.yaml on Kubernetes.
#
# Everything is fetched and verified by the project's own pinned code, at
# build time: the binary pulls ONNX Runtime (`embedd runtime pull`: the CPU
# library from the npm registry's onnxruntime-node tarball, pinned by sha256
# in the binary, internal/pull) and the models (`embedd models pull`: every file pinned by
# sha256 in its manifest under models/; the ONNX graphs are derived in Go
# from the pinned weights and checked against their pins). Nothing is
# downloaded when the container starts. The server listens on 0.0.0.0:50051
# (gRPC) and 0.0.0.0:9090 (/metrics) inside the container and runs as uid
# 10001, the same user as Dockerfile.cuda's image.
#
# MODELS: the models the image carries. The default serves the fp32 model
# (the server's default) and the q8 one, about 2x faster on CPUs with
# int8 dot products (`--model all-minilm-l6-v2-q8`; README "Models").
#
# Not built in this project's CI (no Docker engine there); `make lint-docker`
# lints this file with hadolint.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:12-slim

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo: ONNX Runtime is loaded with dlopen (onnxruntime_go).
RUN CGO_ENABLED=1 go build -trimpath -o /out/embedd ./cmd/embedd

# The runtime and the models, verified, into /cache: the image's cache dir.
FROM build AS assets
ARG MODELS="all-minilm-l6-v2 all-minilm-l6-v2-q8"
# MODELS is a list: split on purpose.
# hadolint ignore=SC2086
RUN /out/embedd runtime pull --cache-dir /cache \
 && /out/embedd models pull --cache-dir /cache ${MODELS} \
 && rm -rf /cache/downloads

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="embedd" \
      org.opencontainers.image.description="embedd gRPC embedding and real-time feature server, ONNX Runtime CPU"
# /var/lib/embedd/data: --data-dir of deploy/compose.yaml and deploy/k8s
# (a volume mounted there takes the directory's owner from the image).
RUN groupadd --system --gid 10001 embedd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/embedd --create-home --shell /usr/sbin/nologin embedd \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/embedd/data
COPY --from=build /out/embedd /usr/local/bin/embedd
COPY --from=assets --chown=10001:10001 /cache /var/lib/embedd/cache
ENV HOME=/var/lib/embedd \
    EMBEDD_CACHE_DIR=/var/lib/embedd/cache \
    EMBEDD_PROVIDER=cpu
WORKDIR /var/lib/embedd
USER 10001:10001
EXPOSE 50051 8080 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["embedd", "health", "--addr", "127.0.0.1:50051", "--timeout", "4s"]
ENTRYPOINT ["embedd"]
# Plaintext on the container network needs --insecure; for TLS mount a
# certificate and key and pass --tls-cert and --tls-key (and --tls-client-ca
# for mutual TLS) instead, and --auth-keys for API keys.
CMD ["serve", "--addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8080", "--metrics-addr", "0.0.0.0:9090", "--insecure"]
