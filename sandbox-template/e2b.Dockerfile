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

# The packages come from packages.txt, the one list of what a sandbox
# carries (the root Dockerfile and template.py read it too).
COPY packages.txt /tmp/packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
    && sed -i -e 's/#.*//' /tmp/packages.txt \
    && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt

# code-server (VS Code in the browser) is optional and off: code-server.sh
# installs it from npm (the editor step every build shares); the control
# plane starts it in each sandbox with that sandbox's password.
# `e2b template build` (legacy) takes --build-arg INSTALL_CODE_SERVER=true;
# v2 has no build arguments and turns ARG into an environment variable, so
# there set the default below to true. No double quotes in RUN lines: E2B's
# `e2b template migrate` puts each one inside a double-quoted string.
ARG INSTALL_CODE_SERVER=false
# A build machine behind a TLS-inspecting proxy names its CA bundle here (a
# file mounted into the build) for npm; empty elsewhere.
ARG NODE_EXTRA_CA_CERTS=
COPY code-server.sh /tmp/code-server.sh
RUN case $INSTALL_CODE_SERVER in \
        true) sh /tmp/code-server.sh ;; \
    esac \
    && rm /tmp/code-server.sh

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
