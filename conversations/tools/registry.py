"""The tools a model may call in a conversation: the built-in ones an administrator enabled,
those of the MCP servers open to the user, less what the user switched off there, and the
file tools when the conversation has files (conversations.files.tools)."""

import re
from dataclasses import dataclass, field

from conversations.files import context as file_context
from conversations.files.tools import FILE_TOOLS
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
    function: object = None  # a file tool's; None: a built-in's by name, or an MCP tool

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
        """The result's text, whether it is an error, and the passages of files it holds
        (citations, for the answer)."""
        if self.server is not None:
            text, is_error = await mcp.call_tool(
                self.server, self.remote_name, arguments, context.timeout_s
            )
            return text, is_error, []
        function = self.function or builtins.BUILTINS[self.name][0]
        result = function(arguments, context)
        if hasattr(result, "__await__"):
            result = await result
        text, citations = result if isinstance(result, tuple) else (result, [])
        return text, False, citations


@dataclass(frozen=True)
class Context:
    """What a running tool may know of its call."""

    user: object
    timeout_s: int
    fetch_hosts: list = field(default_factory=list)
    conversation_id: str = ""


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


def for_conversation(user, conversation, model, *, files=None):
    """The tools offered to `model` in `conversation`: none when the model takes no tools
    or the user turned them off here; else those open to the user, less those switched
    off in this conversation, and the file tools when it has files (whether they are
    offered in a request depends on their size: conversations.files.context). `files`:
    the files in scope, when the caller has read them already."""
    if not model.supports_tools or conversation.tools_off:
        return {}
    switched_off = set(conversation.tools_switched_off)
    tools = {name: tool for name, tool in available(user).items() if name not in switched_off}
    if files is not None:
        has_files = bool(files)
    else:
        has_files = conversation.pk and file_context.in_scope(user, conversation).exists()
    if has_files:
        for name, (function, description, parameters) in FILE_TOOLS.items():
            tools[name] = Tool(name, name, description, parameters, Approval.AUTO,
                               function=function)  # fmt: skip
    return tools


def fetch_hosts():
    fetch = BuiltinTool.objects.filter(name=BuiltinTool.Name.FETCH).first()
    return fetch.hosts if fetch else []
