# The E2B sandbox template: a Debian system with the tools an agent needs,
# and mcp-tools, our static MCP server, at /usr/local/bin/mcp-tools.
#
# Single stage on purpose: E2B's build system v2 rejects multi-stage
# Dockerfiles. The binary is built outside and staged first:
#   ./stage.sh      (puts a static mcp-tools in bin/)
# README.md beside this file has the build commands. v2 reads this file
# itself and knows FROM, RUN, COPY, ENV, ARG, USER and WORKDIR; COPY flags
# such as --chown are not applied there, so permissions are set by RUN.
FROM debian:bookworm-slim

# code-server (VS Code in the browser, port 9000) is optional and off.
# `e2b template build` (legacy) takes --build-arg INSTALL_CODE_SERVER=true;
# v2 has no build arguments and turns ARG into an environment variable, so
# there set the default below to true.
ARG INSTALL_CODE_SERVER=false

# Keep this list alike with the `sandbox` stage of the root Dockerfile.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        ca-certificates \
        curl \
        git \
        procps \
        python3 \
        ripgrep \
        sudo \
    && rm -rf /var/lib/apt/lists/*

RUN if [ "$INSTALL_CODE_SERVER" = "true" ]; then \
        curl -fsSL -o /tmp/install-code-server.sh https://code-server.dev/install.sh \
        && sh /tmp/install-code-server.sh \
        && rm /tmp/install-code-server.sh; \
    fi

# E2B's default user is `user` (home /home/user); v2 creates it before
# these steps, the guard creates it for other builds. /var/lib/mcp-tools
# holds the token file the control plane writes through E2B's file API, and
# the logs of background commands: outside the workspace, so work done in
# the workspace cannot delete the token by accident.
RUN (id -u user >/dev/null 2>&1 || useradd --create-home --home-dir /home/user --shell /bin/bash user) \
    && echo 'user ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/user \
    && chmod 0440 /etc/sudoers.d/user \
    && install -d -o user -g user -m 0700 /var/lib/mcp-tools

COPY bin/mcp-tools /usr/local/bin/mcp-tools
# Fails the build here, not at start, if the staged file is not a binary
# this system can run.
RUN chmod 0755 /usr/local/bin/mcp-tools && /usr/local/bin/mcp-tools --version

# E2B resolves the user by name.
# hadolint ignore=DL3066
USER user
WORKDIR /home/user
