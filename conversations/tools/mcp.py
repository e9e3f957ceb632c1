"""MCP tool servers, reached over streamable HTTP with the `mcp` SDK.

The SDK's 1.x line: it talks through httpx, the client this project already uses for
providers; its 2.x line brings a second HTTP stack (httpx2) for the same job. A session is
opened per use (listing the tools, or one call): calls are few and far between next to
streamed text, and nothing is left open to a server that may restart.
"""

from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from asgiref.sync import async_to_sync
from django.utils import timezone
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

# Opening a session and listing tools; a call's own bound is the site's tool timeout.
CONNECT_TIMEOUT_S = 10


class ServerUnavailable(Exception):
    """The server could not be reached or refused: said in words, without its headers."""


@asynccontextmanager
async def _session(server, http_timeout_s):
    """An initialised session with the server, for one use; what goes wrong, in words."""
    try:
        async with (
            httpx.AsyncClient(
                headers=server.headers, timeout=http_timeout_s, follow_redirects=False
            ) as http,
            streamable_http_client(server.url, http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    except Exception as error:  # the SDK raises what its transport and protocol raise
        raise ServerUnavailable(_reason(server, error)) from None


async def list_tools(server):
    """The server's tools: [{"name", "description", "parameters"}]."""
    async with _session(server, CONNECT_TIMEOUT_S) as session:
        listed = await session.list_tools()
    return [
        {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": tool.inputSchema or {"type": "object", "properties": {}},
        }
        for tool in listed.tools
    ]


async def call_tool(server, name, arguments, timeout_s):
    """The text of a call's result, and whether the server says it is an error."""
    async with _session(server, timeout_s) as session:
        result = await session.call_tool(
            name, arguments, read_timeout_seconds=timedelta(seconds=timeout_s)
        )
    parts = [getattr(part, "text", None) or f"[{part.type} content]" for part in result.content]
    if not parts and result.structuredContent is not None:
        parts = [str(result.structuredContent)]
    return "\n".join(parts), bool(result.isError)


def _reason(server, error):
    """Why a server failed, in words, its header values (which may hold tokens) removed."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]  # anyio's task groups wrap the transport's error
    text = str(error) or type(error).__name__
    for value in server.headers.values():
        if len(value) >= 8:
            text = text.replace(value, "[redacted]")
    return f"The tool server {server.name} is unavailable: {text}"


def refresh(server):
    """List a server's tools again and keep them, or why it could not be reached. For
    the admin and commands (sync code); returns whether it answered."""
    try:
        server.tools = async_to_sync(list_tools)(server)
        server.error = ""
    except ServerUnavailable as unavailable:
        server.error = str(unavailable)
    server.refreshed = timezone.now()
    server.save(update_fields=["tools", "error", "refreshed"])
    return not server.error
