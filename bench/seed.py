"""Create the benchmark's users, their sessions and the provider in a fresh Confab database.

Run with the environment the server will have (CONFAB_VAR_DIR, OPENAI_BASE_URL,
OPENAI_API_KEY), after `manage.py migrate`:

    python -m bench.seed --users 500

It prints one JSON object: {"model": MODEL_PUBLIC_ID, "sessions": [SESSIONID, ...]}, one
session per distinct user, so that per-user limits never interfere with the benchmark.
Passwords are unusable: hashing 500 of them would take minutes and measure nothing.
"""

import argparse
import json
import os


def create_sessions(count):
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    User = get_user_model()
    # The backend a password signs in with (a commit measured with --commit may predate
    # Confab's own): the last one that is not a lockout guard or single sign-on.
    password_backend = [b for b in settings.AUTHENTICATION_BACKENDS if "Password" in b or
                        b.endswith("ModelBackend")][-1]  # fmt: skip
    sessions = []
    with transaction.atomic():
        for index in range(count):
            user = User(username=f"bench{index}", email=f"bench{index}@example.com")
            user.set_unusable_password()
            user.save()
            store = SessionStore()
            store[SESSION_KEY] = str(user.pk)
            store[BACKEND_SESSION_KEY] = password_backend
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.create()
            sessions.append(store.session_key)
    return sessions


def connect_bench_model():
    """The provider `manage.py serve` registers, and the public id of the benchmark's model."""
    from django.conf import settings

    from bench.text import MODEL
    from conversations.management.commands.connect_provider import connect_provider

    provider, _ = connect_provider("Default", settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY)
    return str(provider.models.get(upstream_id=MODEL).public_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    model = connect_bench_model()
    print(json.dumps({"model": model, "sessions": create_sessions(args.users)}))


if __name__ == "__main__":
    main()
