# syntax=docker/dockerfile:1
#
# Builds the two static binaries and the images that carry them.
#
#   docker build --platform linux/amd64 --target artifacts --output type=local,dest=dist .
#       dist/mcp-tools and dist/control-plane, static x86_64 binaries
#   docker build --platform linux/amd64 --target sandbox -t mcp-sandbox .
#       the sandbox image: the E2B template's tools, mcp-tools as its command
#   docker build --platform linux/amd64 --target control-plane-local -t control-plane-local .
#       the control plane with the local provider: sandboxes in its container
#   docker build --platform linux/amd64 --target control-plane -t control-plane .
#       the control plane alone, on a distroless base, for remote providers
#
# The binaries target x86_64-unknown-linux-musl (E2B's microVMs are x86_64);
# on another host, keep --platform linux/amd64 so the build runs emulated
# instead of needing a cross linker.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# musl-gcc, for dependencies that compile C (the TLS stack of reqwest).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# The release profile in Cargo.toml does the tuning (LTO, one codegen unit,
# strip, panic=abort). target/ is a cache mount, so the binaries are copied
# out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
        -p mcp-tools -p control-plane \
    && mkdir -p /out \
    && cp target/x86_64-unknown-linux-musl/release/mcp-tools \
          target/x86_64-unknown-linux-musl/release/control-plane /out/

# Just the binaries, for `--output type=local`.
FROM scratch AS artifacts
COPY --from=builder /out/mcp-tools /out/control-plane /

# The sandbox as a plain Docker image, the same system as
# sandbox-template/e2b.Dockerfile: both install sandbox-template/packages.txt.
# Without a token mcp-tools listens on 127.0.0.1 only, so give it one to
# reach it from outside the container:
#   docker run -p 6060:6060 -e MCP_AUTH_TOKEN=secret mcp-sandbox
FROM debian:${DEBIAN_RELEASE}-slim AS sandbox
COPY sandbox-template/packages.txt /tmp/packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
    && sed -i -e 's/#.*//' /tmp/packages.txt \
    && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt
# The optional editor, as in the template (--build-arg INSTALL_CODE_SERVER=true).
ARG INSTALL_CODE_SERVER=false
ARG NODE_EXTRA_CA_CERTS=
COPY sandbox-template/code-server.sh /tmp/code-server.sh
RUN case $INSTALL_CODE_SERVER in \
        true) sh /tmp/code-server.sh ;; \
    esac \
    && rm /tmp/code-server.sh
RUN useradd --create-home --home-dir /home/user --shell /bin/bash --uid 1000 user \
    && echo 'user ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/user \
    && chmod 0440 /etc/sudoers.d/user \
    && install -d -o user -g user -m 0700 /var/lib/mcp-tools
COPY --from=builder /out/mcp-tools /usr/local/bin/mcp-tools
# `user`, by number so any runtime resolves it.
USER 1000:1000
WORKDIR /home/user
EXPOSE 6060
HEALTHCHECK --interval=10s --timeout=3s CMD ["mcp-tools", "health"]
CMD ["mcp-tools", "--port", "6060", "--workspace", "/home/user", "--state-dir", "/var/lib/mcp-tools"]

# The control plane with the local provider, whose sandboxes are mcp-tools
# processes beside it: the sandbox system plus the control plane (which
# finds mcp-tools next to itself). Outside loopback the control plane wants
# API keys and refuses to start without them:
#   docker run -p 8080:8080 -e CONTROL_PLANE_API_KEYS="$(openssl rand -hex 16)" control-plane-local
FROM sandbox AS control-plane-local
COPY --from=builder /out/control-plane /usr/local/bin/control-plane
ENV CONTROL_PLANE_HOST=0.0.0.0 \
    CONTROL_PLANE_DATA_DIR=/home/user/.control-plane
EXPOSE 8080
HEALTHCHECK NONE
CMD ["control-plane", "serve"]

# The control plane alone, for remote providers:
#   docker run -p 8080:8080 -e CONTROL_PLANE_API_KEYS="$(openssl rand -hex 16)" -e E2B_API_KEY=… \
#     -e E2B_TEMPLATE_ID=mcp-sandbox control-plane serve --provider e2b
# Distroless static has CA certificates (for the E2B API) and a
# nonroot user, and nothing else: no shell and no mcp-tools, so the local
# provider cannot run here: use control-plane-local for that.
FROM gcr.io/distroless/static-debian12:nonroot AS control-plane
COPY --from=builder /out/control-plane /usr/local/bin/control-plane
ENV CONTROL_PLANE_HOST=0.0.0.0 \
    CONTROL_PLANE_DATA_DIR=/home/nonroot/control-plane-data
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/control-plane"]
CMD ["serve"]
