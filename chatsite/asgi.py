"""ASGI entry point: HTTP through Django, the chat websocket through Channels.

`manage.py serve` runs it on daphne, with the reaper in the background (replies orphaned by
a crash end `interrupted`) and a grace period for running replies on shutdown.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite.origins import SameOriginValidator  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What Django and Confab have built by now lives as long as the process: frozen, the
# garbage collector's full passes no longer walk all of it again and again, each a pause
# of the event loop (measured: a one-token reply's TTFT p99 39-50 ms -> 17 ms;
# docs/performance.md, "Garbage collection").
gc.freeze()
