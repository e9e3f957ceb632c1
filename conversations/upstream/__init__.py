"""The provider's side: the one client that talks HTTP to providers (client), the Server-Sent
Events it reads (sse), each provider's chunks read into typed events (chunks, events)."""

from conversations.upstream.client import (
    ChatStream,
    build_body,
    close_clients,
    list_models,
    pseudonymous_user,
)
from conversations.upstream.events import (
    DELTAS,
    Choice,
    Completion,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    UsageReported,
)

__all__ = [
    "DELTAS",
    "ChatStream",
    "Choice",
    "Completion",
    "Failed",
    "Finished",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
    "UpstreamError",
    "UsageReported",
    "build_body",
    "close_clients",
    "list_models",
    "pseudonymous_user",
]
