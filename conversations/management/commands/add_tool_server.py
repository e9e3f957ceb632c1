"""`manage.py add_tool_server NAME URL [--header "Name: value"]… [--approval auto|ask|off]
[--group NAME]…`: register an MCP tool server (streamable HTTP), or update the one of that
name (what is not given stays as it was), and list its tools. Exits 0 when the server
answered; 1 when it did not (it is kept, to be refreshed from the admin once it is up).
docs/administration.md has the contract."""

import json

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from conversations.forms.admin import ToolServerForm
from conversations.models import Approval, ToolServer
from conversations.tools import mcp, registry


class Command(BaseCommand):
    help = "Register an MCP tool server (streamable HTTP) and list its tools."

    def add_arguments(self, parser):
        parser.add_argument("name", help="letters, digits, _ and -: the prefix of its tools")
        parser.add_argument("url", help="its streamable HTTP endpoint, e.g. http://tools:8000/mcp")
        parser.add_argument(
            "--header", action="append", default=[], metavar='"NAME: VALUE"',
            help="a header sent with every request (repeat for several); stored encrypted",
        )  # fmt: skip
        parser.add_argument(
            "--approval", choices=Approval.values,
            help="auto, ask or off for all its tools (new servers: auto; else unchanged)",
        )  # fmt: skip
        parser.add_argument(
            "--group", action="append", metavar="NAME",
            help="only members of this group get its tools (repeat for several; new "
            "servers: everyone; else unchanged)",
        )  # fmt: skip

    def handle(self, name, url, header, approval, group, **options):
        groups = list(Group.objects.filter(name__in=group or ()))
        if missing := set(group or ()) - {g.name for g in groups}:
            raise CommandError(f"No such group: {', '.join(sorted(missing))}")
        # Re-running it changes what it is given, and keeps the rest as it was.
        server = ToolServer.objects.filter(name=name).first() or ToolServer()
        if server.pk and group is None:
            groups = list(server.groups.all())
        form = ToolServerForm(
            {
                "name": name,
                "url": url,
                "header_lines": "\n".join(header),
                "approval": approval or server.approval,
                "tool_approvals": json.dumps(server.tool_approvals),
                "enabled": server.enabled,
                "groups": [g.pk for g in groups],
            },
            instance=server if server.pk else None,
        )
        if not form.is_valid():
            raise CommandError(_errors(form))
        server = form.save()
        if not mcp.refresh(server):
            raise CommandError(f"Saved, but not reached. {server.error}")
        self.stdout.write(f"{server.name}: {len(server.tools)} tools")
        for tool in server.tools:
            self.stdout.write(f"  {registry.mcp_name(server, tool['name'])}")


def _errors(form):
    return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
