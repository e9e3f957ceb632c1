"""Confab's own tools. Each takes the model's arguments (a dict) and the call's context, and
returns text for the model; ToolFailed is an error the model is told about in words."""

import asyncio
import ipaddress
import socket
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import simpleeval
from channels.db import database_sync_to_async

from conversations.models import BuiltinTool, Message

# What fetching a page reads at most, and how many redirects it follows.
FETCH_MAX_BYTES = 512 * 1024
FETCH_MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 10
SEARCH_HITS = 5
SNIPPET_CHARS = 300


class ToolFailed(Exception):
    """A call that could not be done; its message goes back to the model."""


def calculator(arguments, context):
    expression = arguments.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ToolFailed("Give an arithmetic expression as `expression`.")
    # simpleeval: arithmetic and a few functions, never Python's eval; powers and strings
    # are bounded so an expression cannot eat the server.
    evaluator = simpleeval.SimpleEval(functions={"abs": abs, "round": round, "min": min,
                                                 "max": max})  # fmt: skip
    try:
        return str(evaluator.eval(expression))
    except (simpleeval.InvalidExpression, ArithmeticError, TypeError, ValueError,
            SyntaxError) as error:  # fmt: skip
        raise ToolFailed(f"Cannot evaluate {expression!r}: {error}") from None


def current_time(arguments, context):
    name = arguments.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        message = f"Unknown time zone {name!r}: use an IANA name such as Asia/Shanghai."
        raise ToolFailed(message) from None
    now = datetime.now(zone)
    return f"{now.isoformat(timespec='seconds')} ({now:%A}, {name})"


@database_sync_to_async
def search_conversations(arguments, context):
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolFailed("Give the words to look for as `query`.")
    # The user's own conversations only: the one access path of every view.
    mine = Message.objects.for_user(context.user).exclude(role=Message.Role.TOOL)
    hits = mine.filter(content__icontains=query.strip()).select_related("conversation")
    lines = []
    for message in hits.order_by("-created")[:SEARCH_HITS]:
        at = message.content.lower().find(query.strip().lower())
        start = max(at - SNIPPET_CHARS // 2, 0)
        snippet = " ".join(message.content[start : start + SNIPPET_CHARS].split())
        lines.append(f"- “{message.conversation}” ({message.role}): …{snippet}…")
    return "\n".join(lines) if lines else f"Nothing found for {query!r}."


async def fetch_url(arguments, context):
    url = arguments.get("url")
    if not isinstance(url, str):
        raise ToolFailed("Give the page's address as `url`.")
    try:
        # One cap for the whole fetch: httpx's timeout bounds each read, and a host that
        # sends a byte now and then would otherwise hold the call until the tool timeout.
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            return await _fetch(url, context.fetch_hosts)
    except (TimeoutError, httpx.TimeoutException):
        raise ToolFailed(f"{url} did not answer within {FETCH_TIMEOUT_S} s.") from None
    except httpx.HTTPError as error:
        raise ToolFailed(f"Could not fetch {url}: {error or type(error).__name__}") from None


async def _fetch(url, hosts):
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
        for _ in range(FETCH_MAX_REDIRECTS + 1):
            await _check_address(url, hosts)
            async with client.stream("GET", url) as response:
                if response.is_redirect:
                    # Each hop is checked again: a redirect may point inside the network.
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > FETCH_MAX_BYTES:
                        break
                text = body[:FETCH_MAX_BYTES].decode(response.encoding or "utf-8", "replace")
                if "html" in response.headers.get("content-type", ""):
                    text = page_text(text)
                if len(body) > FETCH_MAX_BYTES:
                    text += f"\n\n[Only the first {FETCH_MAX_BYTES // 1024} KiB were read.]"
                return f"HTTP {response.status_code} from {url}\n\n{text}"
    raise ToolFailed(f"More than {FETCH_MAX_REDIRECTS} redirects.")


class _Text(HTMLParser):
    """A page's words, as a reader sees them: no scripts or styles, blocks apart."""

    HIDDEN = {"script", "style", "template", "noscript", "head"}

    def __init__(self):
        super().__init__()
        self.words, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN

    def handle_endtag(self, tag):
        self.hidden -= tag in self.HIDDEN and self.hidden > 0

    def handle_data(self, data):
        if not self.hidden:
            self.words += data.split()


def page_text(html):
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(parser.words)


async def _check_address(url, hosts):
    """Only http(s), only an allowed host, and never an address inside the network: every
    address the name resolves to is checked, so DNS cannot point an allowed name inside."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ToolFailed(f"Only http and https addresses can be fetched, not {url!r}.")
    if not any(host == allowed or host.endswith("." + allowed) for allowed in hosts):
        raise ToolFailed(f"{host} is not a host this server may fetch.")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ToolFailed(f"{host} does not resolve.") from None
    if any(inside_network(ipaddress.ip_address(info[4][0])) for info in infos):
        raise ToolFailed(f"{host} resolves to an address inside a network: refused.")


# IPv6 addresses that carry an IPv4 one in their last 32 bits (NAT64's well-known prefix,
# the old IPv4-compatible form), and prefixes that are not public though Python 3.11's
# `is_global` says they are (local-use NAT64, the old site-local).
CARRY_IPV4 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96")]
NOT_PUBLIC = [ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10")]


def inside_network(address):
    """Private, loopback, link-local, reserved, multicast…: anything that is not one host on
    the public internet, also when written as an IPv6 address that reaches an IPv4 one
    inside (6to4, NAT64)."""
    if address.is_multicast:  # Python counts global multicast as global
        return True
    if address.version == 6:
        if any(address in prefix for prefix in NOT_PUBLIC):
            return True
        carried = address.sixtofour
        if carried is None and any(address in prefix for prefix in CARRY_IPV4):
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None and inside_network(carried):
            return True
    return not address.is_global


# name → (function, description, JSON schema of its parameters)
BUILTINS = {
    BuiltinTool.Name.CALCULATOR: (
        calculator,
        "Evaluate an arithmetic expression exactly, e.g. (17.5 * 3) / 4 or 2 ** 10.",
        {"type": "object", "properties": {"expression": {"type": "string"}},
         "required": ["expression"]},
    ),
    BuiltinTool.Name.CLOCK: (
        current_time,
        "The current date and time in a time zone (an IANA name such as Europe/Paris).",
        {"type": "object", "properties": {"timezone": {"type": "string"}}},
    ),
    BuiltinTool.Name.SEARCH: (
        search_conversations,
        "Search the user's own earlier conversations for words; returns snippets.",
        {"type": "object", "properties": {"query": {"type": "string"}},
         "required": ["query"]},
    ),
    BuiltinTool.Name.FETCH: (
        fetch_url,
        "Fetch a web page (from the hosts this server allows) and return its text.",
        {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
    ),
}  # fmt: skip
