"""The sandbox template, defined with E2B's Template SDK (``pip install e2b``).

    python template.py               build it on E2B as mcp-sandbox (needs E2B_API_KEY)
    python template.py --dockerfile  print it as a Dockerfile (offline)

The packages come from packages.txt, the one list e2b.Dockerfile and the root
Dockerfile install too; the static mcp-tools is staged in bin/ first
(./stage.sh). INSTALL_CODE_SERVER=true adds code-server (VS Code in the
browser) with code-server.sh; the control plane starts it in each sandbox on
port 9000 with that sandbox's password.
"""

import argparse
import os
import sys
from pathlib import Path

from e2b import Template, default_build_logger

HERE = Path(__file__).resolve().parent

NAME = "mcp-sandbox"
CPU_COUNT = 2
MEMORY_MB = 2048

# The same commands as e2b.toml. E2B runs a template's start command as
# root; --user makes mcp-tools switch to `user` before it serves, so the
# agent's commands and files are user's, as with E2B's own SDK.
START_CMD = (
    "mcp-tools --user user --host 0.0.0.0 --port 6060 --workspace /home/user"
    " --token-file /var/lib/mcp-tools/token --state-dir /var/lib/mcp-tools"
)
READY_CMD = "mcp-tools health --url http://127.0.0.1:6060"


def packages() -> list[str]:
    """The package names of packages.txt, comments and blank lines left out."""
    lines = (HERE / "packages.txt").read_text().splitlines()
    return [name for line in lines if (name := line.split("#", 1)[0].strip())]


def template(install_code_server: bool = False):
    """The template: Debian with the package list, `user`, and mcp-tools."""
    t = (
        Template(file_context_path=HERE)
        .from_image("debian:bookworm-slim")
        .apt_install(packages(), no_install_recommends=True)
        .run_cmd("rm -rf /var/lib/apt/lists/*", user="root")
    )
    if install_code_server:
        # The editor step every build shares: code-server from npm.
        t = t.copy("code-server.sh", "/tmp/code-server.sh").run_cmd(
            "sh /tmp/code-server.sh && rm /tmp/code-server.sh", user="root"
        )
    return (
        # E2B creates `user` itself; the guard creates it for other builds
        # (such as the Dockerfile below). /var/lib/mcp-tools holds the token
        # file the control plane writes through E2B's file API, as user.
        t.run_cmd(
            [
                "(id -u user >/dev/null 2>&1"
                " || useradd --create-home --home-dir /home/user --shell /bin/bash user)",
                "echo 'user ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/user",
                "chmod 0440 /etc/sudoers.d/user",
                "install -d -o user -g user -m 0700 /var/lib/mcp-tools",
            ],
            user="root",
        )
        .copy("bin/mcp-tools", "/usr/local/bin/mcp-tools", mode=0o755)
        .run_cmd(
            "chmod 0755 /usr/local/bin/mcp-tools && /usr/local/bin/mcp-tools --version",
            user="root",
        )
        .set_user("user")
        .set_workdir("/home/user")
        .set_start_cmd(START_CMD, READY_CMD)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dockerfile",
        action="store_true",
        help="print the template as a Dockerfile instead of building it",
    )
    args = parser.parse_args()
    definition = template(os.environ.get("INSTALL_CODE_SERVER") == "true")
    if args.dockerfile:
        print(Template.to_dockerfile(definition), end="")
        return 0
    if not (HERE / "bin" / "mcp-tools").is_file():
        print("template.py: no bin/mcp-tools: run ./stage.sh first", file=sys.stderr)
        return 1
    Template.build(
        definition,
        NAME,
        cpu_count=CPU_COUNT,
        memory_mb=MEMORY_MB,
        on_build_logs=default_build_logger(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
