"""Confab settings: every value comes from the environment, with a working default."""

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONFAB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envbool(name, default):
    value = os.environ.get(name, default)
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name, default):
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envlist(name, default):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def secret_key():
    """DJANGO_SECRET_KEY, or one generated on first start and kept under var/."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


# Core. To rotate the secret key, keep the old one in DJANGO_SECRET_KEY_FALLBACKS: sessions
# and the stored provider keys (encrypted with a key derived from it) stay readable.
SECRET_KEY = secret_key()
SECRET_KEY_FALLBACKS = envlist("DJANGO_SECRET_KEY_FALLBACKS", "")
DEBUG = envbool("DJANGO_DEBUG", "False")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
# daphne takes the client's address and scheme from X-Forwarded-* only when told to: it
# trusts them from anyone, so only behind a proxy that alone can reach it.
TRUST_PROXY_HEADERS = envbool("TRUST_PROXY_HEADERS", "false")

# HTTPS, once a proxy serves the site over it (docs/deployment.md). All off by default: `make
# run` serves plain http://127.0.0.1:8000, where a redirect to https or cookies sent only over
# https would lock everyone out.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", "false")
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", "false")
# The proxy's word on the scheme, read by Django as `serve` has daphne read it: the request is
# https under any server, or SECURE_SSL_REDIRECT would send the proxy's requests round forever.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_PROXY_HEADERS else None

INSTALLED_APPS = [
    # First: it installs Twisted's asyncio reactor early, and makes runserver serve ASGI.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # intcomma: counts with units read "8,301 tokens", "8,301 个 token".
    "django.contrib.humanize",
    "template_partials",
    "channels",
    # Counts failed sign-ins and locks an account or an address out (Signing in, below).
    "conversations.apps.SignInLockoutsConfig",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A single sign-on session due for its check asks the provider before its page.
    "conversations.membership.sso.RecheckMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in refused for a lockout into the sign-in page saying so.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversations.membership.context_processors.sign_in",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise. SQLite runs in WAL mode
# with IMMEDIATE transactions so that bursts of writes wait for the lock instead of failing.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'confab.sqlite3'}"),
        # Kept open between database_sync_to_async calls: opening one per call cost ~7 % of
        # the server's CPU while relaying (docs/performance.md).
        conn_max_age=envint("CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer and cache: Redis when REDIS_URL is set (several processes share them),
# in memory otherwise (one process). channels_redis queues up to `capacity` messages per
# process (all its sockets share one queue), then drops; docs/performance.md.
if REDIS_URL := os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 times reads out after 5 s by default, the very time
                # channels_redis blocks in BZPOPMIN: without a longer timeout, idle
                # sockets fail at random with "Timeout reading from".
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 1000,
                "prefix": "confab",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "confab",
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

# Accounts
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Signing in: django-axes counts failed sign-ins in the database. CONFAB_SIGNIN_FAILURES of
# them for one username (from any address), or from one address (for any username), lock
# that username or address out for CONFAB_SIGNIN_LOCKOUT_MINUTES; an administrator unlocks
# earlier (admin, Access attempts; or `manage.py axes_reset_username NAME`). Per username
# stops guessing one password from many addresses, per address guessing many accounts'.
#
# Passwords: Django's, refused under CONFAB_SSO_ONLY but to break-glass administrators.
# Single sign-on (the last backend) answers only the identity provider's callback.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "conversations.membership.backends.PasswordBackend",
    "conversations.membership.sso.SsoBackend",
]
AXES_FAILURE_LIMIT = envint("CONFAB_SIGNIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("CONFAB_SIGNIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success resets nothing: it would clear the failures of every username tried from that
# address, so one's own account would reset the count against another's.
AXES_RESET_ON_SUCCESS = False
# A lockout lasts its cool-off from when it began, however often the locked user retries.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "conversations.views.accounts.locked_out"
# axes logs a WARNING per failure and per lockout, with the address and never the password;
# the username is masked too, as people type passwords into it.
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["username"]
# Successful sign-ins are not recorded: a table that would only grow.
AXES_DISABLE_ACCESS_LOG = True
# Sign-up: at most this many attempts an hour from one address (counted in the cache).
CONFAB_SIGNUPS_PER_HOUR = envint("CONFAB_SIGNUPS_PER_HOUR", 10)
# E-mail: invitations and password resets. Through the SMTP server EMAIL_HOST when it is set;
# else printed to the server's output, so that `make run` needs no mail server.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "false")  # STARTTLS, usually on port 587
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "false")  # TLS from the start, usually port 465
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Confab <confab@localhost>")
# A mail server that does not answer must not hold a page (or an admin's invite) for long.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other: set one")
# Password reset links work this long (Django's default is three days).
PASSWORD_RESET_TIMEOUT = envint("CONFAB_PASSWORD_RESET_HOURS", 24) * 3600
# Single sign-on with an OpenID Connect identity provider (Keycloak, Authentik, Entra ID,
# Google, Okta), through mozilla-django-oidc: on when OIDC_CLIENT_ID is set
# (docs/administration.md). The endpoints are given, not discovered: nothing is fetched
# at start, and a typo fails the start with the variable's name.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
CONFAB_SSO = bool(OIDC_RP_CLIENT_ID)
CONFAB_SSO_NAME = os.environ.get("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_JWKS_ENDPOINT", "")
if CONFAB_SSO:
    for name in ("OIDC_ISSUER", "OIDC_AUTHORIZATION_ENDPOINT", "OIDC_TOKEN_ENDPOINT",
                 "OIDC_USERINFO_ENDPOINT", "OIDC_JWKS_ENDPOINT"):  # fmt: skip
        if not os.environ.get(name):
            raise ImproperlyConfigured(f"{name} must be set with OIDC_CLIENT_ID")
SSO_ORIGIN = "{0.scheme}://{0.netloc}".format(urlsplit(OIDC_OP_AUTHORIZATION_ENDPOINT))
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_CALLBACK_CLASS = "conversations.membership.sso.CallbackView"
OIDC_AUTHENTICATE_CLASS = "conversations.membership.sso.AuthenticateView"
# Who may come in: accounts made at first sign-in (else only invitees and existing users),
# from these e-mail domains only (empty: any).
OIDC_CREATE_USER = envbool("OIDC_CREATE_USERS", "true")
CONFAB_SSO_ALLOWED_DOMAINS = [d.lower() for d in envlist("OIDC_ALLOWED_DOMAINS", "")]
CONFAB_SSO_USERNAME_CLAIM = os.environ.get("OIDC_USERNAME_CLAIM", "preferred_username")
# A claim listing group names (Keycloak's `groups`, Entra's `roles`): the user's Confab
# groups follow it at each sign-in and each check. Empty: groups are managed in Confab.
CONFAB_SSO_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "")
# How often a signed-in SSO session asks the provider again whether its person may still
# come in (refresh token grant); refused, it ends and its sockets close.
CONFAB_SSO_RECHECK_S = envint("OIDC_RECHECK_S", 300)
# Local passwords refused but to break-glass administrators (docs/security.md).
CONFAB_SSO_ONLY = envbool("CONFAB_SSO_ONLY", "false")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy: scripts, styles, images and connections from this origin only, so
# markup that slips past the sanitiser can neither run nor load anything from elsewhere (an
# image URL would carry the conversation away). No inline script or style attribute: data
# reaches scripts through json_script, styles are classes. 'self' covers the chat websocket
# (ws:// or wss://, same host and port).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        # The identity provider too: the invitation's "Sign in with" posts here, and is
        # redirected there, which the browser checks against this directive.
        "form-action": [SELF, *([SSO_ORIGIN] if CONFAB_SSO else [])],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy: browser features a chat never uses, denied to the page and to anything it
# could be made to frame. The clipboard stays allowed (the Copy buttons).
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer", "autoplay", "browsing-topics", "camera", "display-capture",
        "geolocation", "gyroscope", "hid", "magnetometer", "microphone", "midi", "payment",
        "publickey-credentials-get", "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
    )
}  # fmt: skip

# Languages
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Our changes to a language's number formats (chatsite/formats/<locale>/formats.py).
FORMAT_MODULE_PATH = ["chatsite.formats"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Static files, served by the app itself (WhiteNoise): one process is a complete deployment.
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

# Files people upload, through Django's storage API: under var/media by default; any storage
# backend when CONFAB_FILE_STORAGE names its class (django-storages' S3Storage, installed
# beside Confab), with its options as a JSON object (docs/configuration.md).
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {
        "BACKEND": os.environ.get(
            "CONFAB_FILE_STORAGE", "django.core.files.storage.FileSystemStorage"
        ),
        "OPTIONS": json.loads(os.environ.get("CONFAB_FILE_STORAGE_OPTIONS", "{}")),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Worker processes that read uploaded files (PDF text is CPU work: never on the event loop).
CONFAB_FILE_WORKERS = envint("CONFAB_FILE_WORKERS", 1)
# The context window assumed for a model whose administrator set none, when deciding whether
# a file fits whole.
CONFAB_FILE_CONTEXT_TOKENS = envint("CONFAB_FILE_CONTEXT_TOKENS", 8000)
# Passages of files put in the prompt of a model without tools, at most.
CONFAB_FILE_PASSAGES = envint("CONFAB_FILE_PASSAGES", 6)
# Embeddings (when an administrator picks an embedding model): passages per request, and the
# longest wait a rate limit's Retry-After gets before the next try.
CONFAB_EMBEDDING_BATCH = envint("CONFAB_EMBEDDING_BATCH", 32)
CONFAB_EMBEDDING_MAX_WAIT_S = envint("CONFAB_EMBEDDING_MAX_WAIT_S", 30)

# Default provider, registered by `manage.py serve` when set.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
# A provider that could not be reached is tried again this often, in the background.
CONFAB_PROVIDER_RETRY_S = envint("CONFAB_PROVIDER_RETRY_S", 30)
# How often each server process looks for changes to the models on offer, and tells its
# open pages (a provider back, the bundled model ready, a model enabled in admin).
CONFAB_MODELS_WATCH_S = envint("CONFAB_MODELS_WATCH_S", 2)

# Replies
CONFAB_FRAME_INTERVAL_MS = envint("CONFAB_FRAME_INTERVAL_MS", 50)
CONFAB_CHECKPOINT_INTERVAL_MS = envint("CONFAB_CHECKPOINT_INTERVAL_MS", 2000)
CONFAB_STALE_AFTER_S = envint("CONFAB_STALE_AFTER_S", 30)
CONFAB_CONNECT_TIMEOUT_S = envint("CONFAB_CONNECT_TIMEOUT_S", 10)
CONFAB_FIRST_BYTE_TIMEOUT_S = envint("CONFAB_FIRST_BYTE_TIMEOUT_S", 120)
CONFAB_IDLE_TIMEOUT_S = envint("CONFAB_IDLE_TIMEOUT_S", 60)
CONFAB_RETRY_BASE_MS = envint("CONFAB_RETRY_BASE_MS", 500)
CONFAB_MAX_MESSAGE_CHARS = envint("CONFAB_MAX_MESSAGE_CHARS", 100_000)
# The output bound sent with every request to a model that has no max output tokens of its
# own, when the user sets none: what quotas reserve before the provider is called.
CONFAB_DEFAULT_MAX_OUTPUT_TOKENS = envint("CONFAB_DEFAULT_MAX_OUTPUT_TOKENS", 4096)
CONFAB_MAX_FRAME_BYTES = envint("CONFAB_MAX_FRAME_BYTES", 1_000_000)
# Past ~200-250 streams one core falls behind (docs/performance.md): refuse, rather than let
# every reply's latency grow.
CONFAB_MAX_GENERATIONS_PER_PROCESS = envint("CONFAB_MAX_GENERATIONS_PER_PROCESS", 200)
# Sends queue for the one database thread of a process; once the oldest of several has
# waited this long, a new one is answered busy at once (0: never).
CONFAB_MAX_SEND_WAIT_MS = envint("CONFAB_MAX_SEND_WAIT_MS", 200)
CONFAB_USER_MAX_CONCURRENT = envint("CONFAB_USER_MAX_CONCURRENT", 3)
CONFAB_USER_SENDS_PER_MINUTE = envint("CONFAB_USER_SENDS_PER_MINUTE", 20)
# Events one socket may send: a burst, then so many a minute (every frame counts).
CONFAB_SOCKET_EVENTS_BURST = envint("CONFAB_SOCKET_EVENTS_BURST", 30)
CONFAB_SOCKET_EVENTS_PER_MINUTE = envint("CONFAB_SOCKET_EVENTS_PER_MINUTE", 120)
CONFAB_SHUTDOWN_GRACE_S = envint("CONFAB_SHUTDOWN_GRACE_S", 10)
CONFAB_CONVERSATIONS_PER_PAGE = envint("CONFAB_CONVERSATIONS_PER_PAGE", 30)
CONFAB_MESSAGES_SHOWN = envint("CONFAB_MESSAGES_SHOWN", 60)
CONFAB_UNDO_DELETE_S = envint("CONFAB_UNDO_DELETE_S", 3600)
CONFAB_AUTO_TITLE = envbool("CONFAB_AUTO_TITLE", "true")
# The gateway (/v1) sends a comment line after this much silence, so proxies and clients
# keep a stream whose model is still thinking.
CONFAB_KEEP_ALIVE_S = envint("CONFAB_KEEP_ALIVE_S", 15)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "conversations": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        # Failed sign-ins and lockouts (WARNING), never with the password.
        "axes": {"handlers": ["console"], "level": "WARNING"},
    },
}
