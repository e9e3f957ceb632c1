"""The tools a model may call in a conversation: the built-in ones an administrator enabled,
and those of the MCP servers open to the user, less what the user switched off there."""

import re
from dataclasses import dataclass, field

from conversations.models import Approval, BuiltinTool, ToolServer
from conversations.tools import builtins, mcp

# Characters a function name may not hold (OpenAI's rule: letters, digits, _ and -).
NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64


@dataclass(frozen=True)
class Tool:
    name: str  # as the model calls it
    label: str  # as a person reads it
    description: str
    parameters: dict
    approval: str
    server: ToolServer | None = None  # an MCP tool's server; None for a built-in
    remote_name: str = ""  # an MCP tool's own name on its server

    def spec(self):
        """The tool as the Chat Completions request offers it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    async def run(self, arguments, context):
        """The result's text and whether it is an error."""
        if self.server is not None:
            return await mcp.call_tool(self.server, self.remote_name, arguments, context.timeout_s)
        function = builtins.BUILTINS[self.name][0]
        result = function(arguments, context)
        if hasattr(result, "__await__"):
            result = await result
        return result, False


@dataclass(frozen=True)
class Context:
    """What a running tool may know of its call."""

    user: object
    timeout_s: int
    fetch_hosts: list = field(default_factory=list)


def mcp_name(server, tool):
    """An MCP tool's name for the model: its server's name, two underscores, its own."""
    return NOT_IN_NAMES.sub("_", f"{server.name}__{tool}")[:MAX_NAME]


def available(user):
    """Every tool open to the user, by name, whatever a conversation switched off. Runs
    queries: call it in the database thread."""
    tools = {}
    for builtin in BuiltinTool.load():
        if builtin.enabled and builtin.approval != Approval.OFF:
            _, description, parameters = builtins.BUILTINS[builtin.name]
            tools[builtin.name] = Tool(
                builtin.name, builtin.get_name_display(), description, parameters,
                builtin.approval,
            )  # fmt: skip
    for server in ToolServer.objects.available_to(user):
        for listed in server.tools:
            approval = server.approval_of(listed["name"])
            if approval == Approval.OFF:
                continue
            name = mcp_name(server, listed["name"])
            tools[name] = Tool(
                name, f"{listed['name']} ({server.name})", listed.get("description", ""),
                listed.get("parameters") or {"type": "object", "properties": {}}, approval,
                server=server, remote_name=listed["name"],
            )  # fmt: skip
    return tools


def for_conversation(user, conversation, model):
    """The tools offered to `model` in `conversation`: none when the model takes no tools
    or the user turned them off here; else those open to the user, less those switched
    off in this conversation."""
    if not model.supports_tools or conversation.tools_off:
        return {}
    switched_off = set(conversation.tools_switched_off)
    return {name: tool for name, tool in available(user).items() if name not in switched_off}


def fetch_hosts():
    fetch = BuiltinTool.objects.filter(name=BuiltinTool.Name.FETCH).first()
    return fetch.hosts if fetch else []
