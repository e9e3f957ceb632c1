"""ASGI entry point: HTTP through Django, the chat websocket through Channels.

The lifespan handler starts the reaper (replies orphaned by a crash end `interrupted`)
and, on shutdown, gives running replies a grace period before ending them.
"""

import asyncio
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from conversations import reaper, runner  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402


async def lifespan(scope, receive, send):
    background = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            background = [
                asyncio.create_task(reaper.reap_periodically()),
                asyncio.create_task(reaper.heartbeat_periodically()),
            ]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runner.shutdown()
            for task in background:
                task.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "lifespan": lifespan,
    }
)

# What Django and Confab have built by now lives as long as the process: frozen, the
# garbage collector's full passes no longer walk all of it again and again, each a pause
# of the event loop (measured: a one-token reply's TTFT p99 39-50 ms -> 17 ms;
# docs/performance.md, "Garbage collection").
gc.freeze()
