"""Confab's own tools, each on its own: a calculator that is never eval, the time in a
zone, a search that reads only the user's conversations, and a fetch that stays out of
the server's network."""

import ipaddress
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync

from conversations.models import BuiltinTool, Conversation, Message
from conversations.tools import builtins, registry
from conversations.tools.builtins import ToolFailed

pytestmark = pytest.mark.django_db


def run(name, arguments, user=None, hosts=()):
    tool = registry.Tool(name, name, "", {}, "auto")
    context = registry.Context(user, 5, list(hosts))
    text, is_error, _ = async_to_sync(tool.run)(arguments, context)
    assert not is_error
    return text


def test_every_built_in_tool_is_off_until_an_administrator_turns_it_on(alice):
    assert registry.available(alice) == {}
    BuiltinTool.objects.filter(name="current_time").update(enabled=True)
    assert list(registry.available(alice)) == ["current_time"]


@pytest.mark.parametrize(
    ("expression", "result"),
    [("6 * 7", "42"), ("(17.5 * 3) / 4", "13.125"), ("2 ** 10", "1024"),
     ("round(2.675, 2)", "2.67"), ("max(3, 9, 4)", "9")],
)  # fmt: skip
def test_the_calculator_does_arithmetic(expression, result):
    assert run("calculator", {"expression": expression}) == result


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd').read()",
        "9 ** 9 ** 9",  # a power that would take the server's memory
        "'a' * 10 ** 9",
        "1 / 0",
        "",
    ],
)
def test_the_calculator_refuses_what_is_not_plain_arithmetic(expression):
    with pytest.raises(ToolFailed):
        run("calculator", {"expression": expression})


def test_the_time_in_a_zone():
    text = run("current_time", {"timezone": "Asia/Shanghai"})
    assert "+08:00" in text and text.endswith(", Asia/Shanghai)")
    assert "+00:00" in run("current_time", {})
    with pytest.raises(ToolFailed, match="Unknown time zone 'Mars/Olympus'"):
        run("current_time", {"timezone": "Mars/Olympus"})


@pytest.mark.django_db(transaction=True)  # the search runs in the database thread
def test_search_finds_only_the_users_own_conversations(alice, bob):
    for owner, text in ((alice, "the blue heron nests by the river"),
                        (bob, "bob's blue heron secret")):  # fmt: skip
        conversation = Conversation.objects.create(owner=owner, title=f"{owner}'s notes")
        Message.objects.create(conversation=conversation, role="user", content=text)
    found = run("search_conversations", {"query": "Blue Heron"}, user=alice)
    assert "the blue heron nests by the river" in found and "alice's notes" in found
    assert "secret" not in found
    assert run("search_conversations", {"query": "heron"}, user=bob).count("\n- ") == 0
    assert "Nothing found for 'kingfisher'." == run(
        "search_conversations", {"query": "kingfisher"}, user=alice
    )


class Pages(BaseHTTPRequestHandler):
    def do_GET(self):
        port = self.server.server_address[1]
        if self.path in ("/silent", "/trickle"):
            self.answer_slowly()
            return
        if self.path == "/redirect-inside":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{port}/secret")
            self.end_headers()
            return
        body = (b"<html><head><title>T</title></head><body><h1>Hello</h1><script>x()</script>"
                b"<p>from the\n page</p></body></html>"
                if self.path == "/page" else b"x" * (2 * builtins.FETCH_MAX_BYTES))  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/page" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_slowly(self):
        """/silent: the connection is taken, and nothing comes back. /trickle: a byte of
        the page every 0.1 s, each soon enough for a read's timeout, 5 s in all."""
        released = self.server.released
        try:
            if self.path == "/silent":
                released.wait(10)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "50")
            self.end_headers()
            for _ in range(50):
                if released.wait(0.1):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:
            pass  # the fetch gave up and hung up

    def log_message(self, *args):
        pass


@pytest.fixture
def web(monkeypatch):
    """A web server on 127.0.0.1, which these tests treat as a public address (nothing
    public can be reached from here); 127.0.0.2 stays inside the network."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.released = threading.Event()  # ends the slow answers
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(builtins, "inside_network", lambda address: str(address) != "127.0.0.1")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.released.set()
    server.shutdown()
    server.server_close()


def test_fetch_reads_a_page_of_an_allowed_host_as_text(web):
    text = run("fetch_url", {"url": f"{web}/page"}, hosts=["127.0.0.1"])
    assert text == f"HTTP 200 from {web}/page\n\nHello from the page"


def test_fetch_reads_at_most_its_cap(web):
    text = run("fetch_url", {"url": f"{web}/big"}, hosts=["127.0.0.1"])
    assert text.count("x") == builtins.FETCH_MAX_BYTES
    assert text.endswith("\n\n[Only the first 512 KiB were read.]")


@pytest.mark.parametrize(
    ("url", "hosts", "refusal"),
    [
        ("file:///etc/passwd", ["127.0.0.1"], "Only http and https addresses"),
        ("{web}/page", ["example.com"], "127.0.0.1 is not a host this server may fetch"),
        ("http://127.0.0.3:9/", ["127.0.0.3"], "127.0.0.3 resolves to an address inside"),
        ("{web}/redirect-inside", ["127.0.0.1", "127.0.0.2"], "127.0.0.2 resolves to an address"),
    ],
    ids=["not http", "not allowed", "resolves inside", "redirected inside"],
)
def test_fetch_refuses_to_reach_inside_the_network(web, url, hosts, refusal):
    with pytest.raises(ToolFailed, match=refusal):
        run("fetch_url", {"url": url.format(web=web)}, hosts=hosts)


def test_localhost_is_inside_the_network():
    with pytest.raises(ToolFailed, match="localhost resolves to an address inside a network"):
        run("fetch_url", {"url": "http://localhost:9/"}, hosts=["localhost"])


def test_a_host_that_does_not_answer_is_told_in_words(web):
    with pytest.raises(ToolFailed, match=re.escape("Could not fetch http://127.0.0.1:9/")):
        run("fetch_url", {"url": "http://127.0.0.1:9/"}, hosts=["127.0.0.1"])


@pytest.mark.parametrize("path", ["/silent", "/trickle"], ids=["no answer", "a byte at a time"])
def test_a_host_that_answers_too_slowly_is_given_up_on_within_the_cap(web, monkeypatch, path):
    monkeypatch.setattr(builtins, "FETCH_TIMEOUT_S", 1)
    started = time.monotonic()
    with pytest.raises(ToolFailed) as refused:
        run("fetch_url", {"url": f"{web}{path}"}, hosts=["127.0.0.1"])
    assert str(refused.value) == f"{web}{path} did not answer within 1 s."
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1", "172.16.0.1", "192.168.1.1",  # private
        "127.0.0.1", "::1", "0.0.0.0", "::",  # this machine
        "169.254.169.254", "fe80::1",  # link-local, where clouds keep their metadata
        "fc00::1", "fd12:3456::1",  # IPv6's private range
        "100.64.0.1",  # carrier-grade NAT, shared inside a provider's network
        "198.18.0.1", "192.0.2.1", "2001:db8::1", "240.0.0.1",  # benchmarks, docs, reserved
        "fec0::1",  # IPv6's old site-local
        "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4 in IPv6 clothes
        "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe", "::a00:1",  # 6to4, NAT64, v4-compatible
        "64:ff9b:1::a00:1",  # a network's own NAT64
        "224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",  # multicast, global ones too
    ],
)  # fmt: skip
def test_an_address_inside_a_network_is_inside(address):
    assert builtins.inside_network(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "2002:808:808::1",
                "64:ff9b::808:808"],
)  # fmt: skip
def test_a_public_address_is_not_inside(address):
    assert not builtins.inside_network(ipaddress.ip_address(address))


@pytest.fixture
def dns(monkeypatch):
    """This machine's resolver, with names of our own: `dns["name"] = [addresses]`."""
    answers = {}
    resolve = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return resolve(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, port, 0, 0) if ":" in a else (a, port))
            for a in answers[host]
        ]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize(
    "addresses",
    [["169.254.169.254"], ["93.184.215.14", "10.0.0.7"], ["64:ff9b::a9fe:a9fe"]],
    ids=["the metadata service", "one address of several", "through NAT64"],
)
def test_an_allowed_name_that_resolves_inside_is_refused(dns, addresses):
    dns["docs.example.com"] = addresses
    refusal = "docs.example.com resolves to an address inside a network: refused."
    with pytest.raises(ToolFailed, match=refusal):
        run("fetch_url", {"url": "http://docs.example.com/latest/meta-data/"},
            hosts=["example.com"])  # fmt: skip
