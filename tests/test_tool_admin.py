"""Administering tools: MCP tool servers (in the admin and with `add_tool_server`), their
headers write-only and encrypted, their tools listed from the real server; the built-in
tools, each off until turned on."""

import logging
from html import unescape

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from conversations.models import BuiltinTool, ToolServer
from tests.mcp_server import TOKEN

TOOLS = ["lookup_capital", "slow", "rendezvous", "explode", "whoami"]
AUTHORIZATION = f"Authorization: Bearer {TOKEN}"


def stored_headers(server):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_headers FROM conversations_toolserver WHERE id = %s", [server.pk.hex]
        )
        return cursor.fetchone()[0]


def test_the_command_registers_a_server_and_lists_its_tools(db, mcp_server, capsys):
    call_command("add_tool_server", "atlas", mcp_server, "--header", AUTHORIZATION,
                 "--approval", "ask")  # fmt: skip
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "atlas: 5 tools"
    assert "  atlas__lookup_capital" in out
    server = ToolServer.objects.get(name="atlas")
    assert [tool["name"] for tool in server.tools] == TOOLS
    assert (server.approval, server.headers) == ("ask", {"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in stored_headers(server)  # encrypted at rest


def test_the_command_updates_a_server_and_keeps_what_it_is_not_given(db, mcp_server):
    Group.objects.create(name="research")
    call_command("add_tool_server", "atlas", mcp_server, "--header", AUTHORIZATION,
                 "--approval", "ask", "--group", "research")  # fmt: skip
    ToolServer.objects.filter(name="atlas").update(enabled=False)
    call_command("add_tool_server", "atlas", mcp_server)
    server = ToolServer.objects.get(name="atlas")
    assert (server.approval, server.headers["Authorization"]) == ("ask", f"Bearer {TOKEN}")
    assert [g.name for g in server.groups.all()] == ["research"]
    assert not server.enabled
    call_command("add_tool_server", "atlas", mcp_server, "--approval", "off")
    server.refresh_from_db()
    assert server.approval == "off" and server.groups.count() == 1
    assert ToolServer.objects.count() == 1


def test_the_command_keeps_a_server_that_is_down_and_says_so(db):
    with pytest.raises(CommandError, match=r"Saved, but not reached\. The tool server later is"):
        call_command("add_tool_server", "later", "http://127.0.0.1:9/mcp")
    server = ToolServer.objects.get(name="later")
    assert server.tools == [] and server.error


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["bad name", "http://127.0.0.1:9/mcp"], "name: Letters, digits"),
        (["a__b", "http://127.0.0.1:9/mcp"], "name: Letters, digits"),
        (["atlas", "ftp://host/mcp"], "url: Enter an http:// or https:// address"),
        (["atlas", "http://127.0.0.1:9/mcp", "--header", "no colon"], "Name: value"),
        (["atlas", "http://127.0.0.1:9/mcp", "--group", "nobody"], "No such group: nobody"),
    ],
)
def test_the_command_refuses_what_it_cannot_use(db, args, error):
    with pytest.raises(CommandError, match=error):
        call_command("add_tool_server", *args)
    assert not ToolServer.objects.exists()


@pytest.fixture
def admin_client(alice_admin):
    return alice_admin


def test_adding_a_server_in_the_admin_lists_its_tools(admin_client, mcp_server):
    response = admin_client.post(
        reverse("admin:conversations_toolserver_add"),
        {"name": "atlas", "url": mcp_server, "header_lines": AUTHORIZATION,
         "approval": "auto", "tool_approvals": '{"explode": "off"}', "enabled": "on"},
        follow=True,
    )  # fmt: skip
    page = unescape(response.content.decode())
    assert "Atlas answers with 5 tools: lookup_capital, slow, rendezvous, explode, whoami." in page
    server = ToolServer.objects.get(name="atlas")
    assert server.headers == {"Authorization": f"Bearer {TOKEN}"}

    change = admin_client.get(reverse("admin:conversations_toolserver_change", args=[server.pk]))
    page = change.content.decode()
    assert "atlas__lookup_capital" in page
    assert "Stored: Authorization (values hidden)" in page
    assert TOKEN not in page


def test_the_headers_are_write_only(admin_client, mcp_server, caplog):
    server = ToolServer(name="atlas", url=mcp_server)
    server.headers = {"Authorization": f"Bearer {TOKEN}"}
    server.save()
    change = reverse("admin:conversations_toolserver_change", args=[server.pk])
    with caplog.at_level(logging.DEBUG):
        pages = [admin_client.get(change), admin_client.get(
            reverse("admin:conversations_toolserver_changelist"))]  # fmt: skip
        admin_client.post(change, {"name": "atlas", "url": mcp_server, "header_lines": "",
                                   "approval": "ask", "tool_approvals": "{}",
                                   "enabled": "on"})  # fmt: skip
    assert all(TOKEN not in page.content.decode() for page in pages)
    assert TOKEN not in caplog.text
    server.refresh_from_db()
    assert (server.approval, server.headers) == ("ask", {"Authorization": f"Bearer {TOKEN}"})


def test_the_refresh_action_lists_a_servers_tools_and_keeps_them(admin_client, mcp_server):
    server = ToolServer(name="atlas", url=mcp_server)
    server.headers = {"Authorization": f"Bearer {TOKEN}"}
    server.save()
    assert server.tools == [] and server.refreshed is None
    response = admin_client.post(
        reverse("admin:conversations_toolserver_changelist"),
        {"action": "refresh_tools", "_selected_action": [server.pk]},
        follow=True,
    )
    page = unescape(response.content.decode())
    assert "Atlas answers with 5 tools: lookup_capital, slow, rendezvous, explode, whoami." in page
    server.refresh_from_db()
    assert [tool["name"] for tool in server.tools] == TOOLS
    assert server.refreshed is not None and server.error == ""


def test_the_refresh_action_says_when_a_server_is_down(admin_client):
    server = ToolServer.objects.create(name="down", url="http://127.0.0.1:9/mcp")
    response = admin_client.post(
        reverse("admin:conversations_toolserver_changelist"),
        {"action": "refresh_tools", "_selected_action": [server.pk]},
        follow=True,
    )
    assert "The tool server down is unavailable" in response.content.decode()
    server.refresh_from_db()
    assert server.refreshed is not None and server.error


def test_a_tool_approval_must_be_auto_ask_or_off(admin_client, mcp_server):
    response = admin_client.post(
        reverse("admin:conversations_toolserver_add"),
        {"name": "atlas", "url": mcp_server, "approval": "auto",
         "tool_approvals": '{"explode": "sometimes"}', "enabled": "on"},
    )  # fmt: skip
    assert 'A JSON object of tool names to "auto", "ask" or "off".' in unescape(
        response.content.decode()
    )
    assert not ToolServer.objects.exists()


def test_the_built_in_tools_are_listed_off_and_turned_on_there(admin_client):
    changelist = reverse("admin:conversations_builtintool_changelist")
    page = admin_client.get(changelist).content.decode()
    for label in ("calculator", "current date and time", "search in the user", "fetch a web page"):
        assert label in page
    tools = BuiltinTool.load()
    assert not any(tool.enabled for tool in tools)

    data = {"form-TOTAL_FORMS": "4", "form-INITIAL_FORMS": "4", "_save": "Save"}
    for i, tool in enumerate(tools):
        data[f"form-{i}-id"] = tool.pk
        data[f"form-{i}-approval"] = "ask" if tool.name == "current_time" else "auto"
        if tool.name in ("calculator", "current_time"):
            data[f"form-{i}-enabled"] = "on"
    admin_client.post(changelist, data)
    enabled = {t.name: t.approval for t in BuiltinTool.objects.filter(enabled=True)}
    assert enabled == {"calculator": "auto", "current_time": "ask"}
