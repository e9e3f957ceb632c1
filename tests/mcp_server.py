"""A real MCP tool server for the tests: the `mcp` SDK's FastMCP over streamable HTTP on
loopback. Run as `python -m tests.mcp_server PORT`; the tests start it (conftest.py).

Its tools: a lookup the model cannot know the answer to, one that takes its time, one
that raises, and one that says whether the request carried the team's token.
"""

import asyncio
import sys

from mcp.server.fastmcp import Context, FastMCP

TOKEN = "mcp-team-token-7c1e9b"
CAPITALS = {"france": "Paris", "kenya": "Nairobi", "mongolia": "Ulaanbaatar"}


def build(port):
    server = FastMCP("atlas", host="127.0.0.1", port=port, stateless_http=True)

    @server.tool()
    def lookup_capital(country: str) -> str:
        """The capital city of a country."""
        return CAPITALS.get(country.strip().lower(), f"No capital known for {country}.")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Wait a while, then say so."""
        await asyncio.sleep(seconds)
        return f"Waited {seconds} s."

    arrivals = {}

    @server.tool()
    async def rendezvous(key: str) -> str:
        """Wait (up to 5 s) for a second call with the same key: only calls that run side
        by side meet."""
        arrivals[key] = arrivals.get(key, 0) + 1
        for _ in range(50):
            if arrivals[key] >= 2:
                return "met"
            await asyncio.sleep(0.1)
        return "alone"

    @server.tool()
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("the atlas caught fire")

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Whether the caller sent the team's token."""
        sent = ctx.request_context.request.headers.get("authorization", "")
        return "the team" if sent == f"Bearer {TOKEN}" else "a stranger"

    return server


if __name__ == "__main__":
    build(int(sys.argv[1])).run(transport="streamable-http")
