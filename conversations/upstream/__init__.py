"""The provider's side: the one client that talks HTTP to providers (client), the Server-Sent
Events it reads (sse), each provider's chunks read (chunks) into typed events (events).

Iterate a `ChatStream` for its events; fold them with a `Completion`."""

from conversations.upstream.client import (
    ChatStream,
    build_body,
    close_clients,
    embeddings,
    list_models,
    pseudonymous_user,
)
from conversations.upstream.events import Completion, UpstreamError

__all__ = [
    "ChatStream",
    "Completion",
    "UpstreamError",
    "build_body",
    "close_clients",
    "embeddings",
    "list_models",
    "pseudonymous_user",
]
