"""The original sandbox server's client walk-through, run against a control plane.

A `SandboxClient` with the original client's interface (httpx only), and its
walk-through: create, `ls -la`, write hello.py, read it back, `python
hello.py`, delete. Each step is checked; the script exits non-zero at the
first one that fails.

    python3 seed_walkthrough.py http://127.0.0.1:8080 [API_KEY]

The test suite runs it (control-plane/tests/templates.rs) against a control
plane whose default template is a small one.
"""

import asyncio
import sys
from typing import Optional

import httpx


class SandboxClient:
    """Client of the sandbox server's HTTP API."""

    def __init__(self, server_url: str, timeout: int = 60, api_key: Optional[str] = None):
        self.server_url = server_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, headers=self.headers)

    async def create_sandbox(self, user_id: str, template_id: Optional[str] = None) -> dict:
        """Create a new sandbox."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/create",
                json={"user_id": user_id, "template_id": template_id},
            )
            response.raise_for_status()
            return response.json()

    async def connect_sandbox(self, sandbox_id: str) -> None:
        """Connect to an existing sandbox (resumes it if paused)."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/connect", json={"sandbox_id": sandbox_id}
            )
            response.raise_for_status()

    async def run_command(self, sandbox_id: str, command: str, background: bool = False) -> str:
        """Run a command in the sandbox; returns its output."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/run-command",
                json={"sandbox_id": sandbox_id, "command": command, "background": background},
            )
            response.raise_for_status()
            return response.json()["output"]

    async def expose_port(self, sandbox_id: str, port: int) -> str:
        """URL at which a port inside the sandbox is reached."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/expose-port",
                json={"sandbox_id": sandbox_id, "port": port},
            )
            response.raise_for_status()
            return response.json()["url"]

    async def write_file(self, sandbox_id: str, path: str, content: str) -> None:
        """Write a file in the sandbox's workspace."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/write-file",
                json={"sandbox_id": sandbox_id, "path": path, "content": content},
            )
            response.raise_for_status()

    async def read_file(self, sandbox_id: str, path: str) -> str:
        """Read a file of the sandbox's workspace."""
        async with self._client() as client:
            response = await client.post(
                f"{self.server_url}/sandboxes/read-file",
                json={"sandbox_id": sandbox_id, "path": path},
            )
            response.raise_for_status()
            return response.json()["content"]

    async def delete_sandbox(self, sandbox_id: str) -> None:
        """Delete the sandbox."""
        async with self._client() as client:
            response = await client.delete(f"{self.server_url}/sandboxes/{sandbox_id}")
            response.raise_for_status()


def check(step: str, ok: bool, seen: object) -> None:
    if not ok:
        print(f"FAILED at {step}: {seen!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {step}")


async def main(url: str, api_key: Optional[str]) -> None:
    client = SandboxClient(url, api_key=api_key)

    result = await client.create_sandbox(user_id="test_user")
    sandbox_id = result["sandbox_id"]
    print(f"Sandbox ID: {sandbox_id}")
    print(f"VS Code URL: {result['vscode_url']}")
    print(f"MCP URL: {result['mcp_url']}")
    check("create", bool(sandbox_id) and result["mcp_url"].startswith("http"), result)

    output = await client.run_command(sandbox_id, "ls -la")
    print(f"Command output:\n{output}")
    check("ls -la", "total" in output, output)

    await client.write_file(sandbox_id, "hello.py", "print('Hello!')")

    content = await client.read_file(sandbox_id, "hello.py")
    print(f"File content: {content}")
    check("read_file", content == "print('Hello!')", content)

    output = await client.run_command(sandbox_id, "python hello.py")
    print(f"Python output: {output}")
    check("python hello.py", output.strip() == "Hello!", output)

    await client.delete_sandbox(sandbox_id)
    print("Sandbox deleted")
    async with httpx.AsyncClient(timeout=30, headers=client.headers) as http:
        status = (await http.get(f"{client.server_url}/sandboxes/{sandbox_id}/status")).status_code
    check("delete", status == 404, status)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
