"""The websocket's Origin check, as strict as Django's CSRF check of a form's origin."""

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


class SameOriginValidator:
    """Lets a websocket through only from a page of this site.

    The handshake's Origin must be exactly `scheme://host[:port]` of the socket itself
    (its Host header, which must be one of ALLOWED_HOSTS, and https if the socket is wss,
    else http), or one of CSRF_TRUSTED_ORIGINS (where `https://*.example.com` allows
    subdomains): the rules Django's CsrfViewMiddleware applies to a form's Origin. Channels'
    AllowedHostsOriginValidator compares the host alone, so a page on another port or
    scheme of the same host could drive a signed-in user's socket.

    A refused socket is accepted and then closed with code 4403, so that a browser sees the
    code; refusing the handshake would show it only 1006.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not allowed(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.application(scope, receive, send)


def allowed(scope):
    headers = dict(scope.get("headers", ()))
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    domain, _port = split_domain_port(host)
    if not origin or not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if _scheme(scope, headers) in ("https", "wss") else "http"
    if origin == f"{scheme}://{host}" or origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    origin_scheme, _, netloc = origin.partition("://")
    return any(
        is_same_domain(netloc, trusted.partition("://")[2].lstrip("*"))
        for trusted in settings.CSRF_TRUSTED_ORIGINS
        if "*" in trusted and trusted.startswith(origin_scheme + "://")
    )


def _scheme(scope, headers):
    """The socket's scheme: daphne leaves it out of a websocket's scope, so behind a proxy
    trusted with TRUST_PROXY_HEADERS its X-Forwarded-Proto says it."""
    if scheme := scope.get("scheme"):
        return scheme
    if settings.TRUST_PROXY_HEADERS:
        return headers.get(b"x-forwarded-proto", b"ws").decode("latin-1").lower()
    return "ws"
