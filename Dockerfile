# syntax=docker/dockerfile:1
#
# mirrornet mirror image: a static binary on distroless, run as a non-root
# user, data in the /data volume, configured entirely by MIRRORNET_*
# environment variables (every flag FOO-BAR of every command is also
# MIRRORNET_FOO_BAR; repeatable flags take a comma-separated list).
#
#   docker build -t mirrornet .
#   docker run -p 4001:4001 -p 4001:4001/udp -p 8080:8080 -v mirrornet:/data mirrornet
#
# See docker-compose.yml for a five-mirror network.

FROM golang:1.26 AS build
ARG VERSION=v0.1.0-dev
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w -X github.com/mirrornet/mirrornet/node.Version=${VERSION}" \
      -o /out/mirrornet ./cmd/mirrornet \
 && mkdir -p /out/data

# distroless/static: no shell, no libc (the binary needs neither), CA
# certificates and /tmp included; the nonroot user is uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mirrornet /usr/local/bin/mirrornet
# The data volume must be owned by the user the node runs as; a named
# volume takes its ownership from this directory on first use.
COPY --from=build --chown=65532:65532 /out/data /data
# The sample dapp, for the compose file's publisher.
COPY examples/sample-dapp/site /usr/share/mirrornet/sample-dapp
ENV MIRRORNET_DATA=/data \
    MIRRORNET_LISTEN=/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1 \
    MIRRORNET_HTTP=0.0.0.0:8080
VOLUME ["/data"]
# 4001: libp2p (TCP and QUIC); 8080: public read-only HTTP (gateway, status, metrics).
EXPOSE 4001/tcp 4001/udp 8080/tcp
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["mirrornet", "status", "--http", "127.0.0.1:8080", "--json"]
ENTRYPOINT ["mirrornet"]
CMD ["node"]
