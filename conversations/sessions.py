"""A websocket lives no longer than its session.

A socket is signed in by the session cookie it opened with. Every event that starts work
(send, edit, regenerate, subscribe, stop) checks, within the database hop it makes anyway,
that this session still signs this user in, as Django checks it for a page: the session
exists and has not expired, it still verifies against the user's password, and the account
is active. And the moments a session ends tell the user's sockets at once, through the
channel layer (`user.<id>`, which every socket of the user joins), so that an idle socket
closes too: signing out ends that session's sockets; a password change, a deactivation or
a deletion makes every socket of the user check its session again.
"""

from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.crypto import constant_time_compare

from conversations.fanout import user_group

# The fields of a user whose change can end their sessions.
SIGNING_FIELDS = {"password", "is_active"}


class SessionEnded(Exception):
    """The socket's session no longer signs its user in: the socket closes with 4401."""


def check(session_key, user_id):
    """Return the user, as read now, unless `session_key` is no live session of user
    `user_id`: then raise SessionEnded.

    Two queries (the session, the user), to run inside a database hop the caller makes
    anyway. The session is only read: a page's request would flush an invalid one.
    """
    if not session_key:
        raise SessionEnded
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()  # empty when the session is gone or has expired
    backend_path = data.get(BACKEND_SESSION_KEY)
    if str(data.get(SESSION_KEY)) != str(user_id):
        raise SessionEnded
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        raise SessionEnded
    user = load_backend(backend_path).get_user(user_id)  # None when deleted or inactive
    session_hash = data.get(HASH_SESSION_KEY)
    if user is None or not session_hash:
        raise SessionEnded
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(session_hash, known) for known in hashes):
        raise SessionEnded  # the password changed since this session signed in
    return user


def tell_sockets(user_id, ended_session=None):
    """Ask the user's sockets, in every process, to check their session again; with
    `ended_session`, the sockets of that session close without asking the database."""
    message = {"type": "session.check", "ended": ended_session}
    async_to_sync(get_channel_layer().group_send)(user_group(user_id), message)


def tell_sockets_after_commit(user_id):
    """tell_sockets(), once what the caller writes is there for the sockets to read."""
    transaction.on_commit(lambda: tell_sockets(user_id))


def _signed_out(sender, request, user, **kwargs):
    if user is not None and request is not None:
        tell_sockets(user.pk, ended_session=request.session.session_key)


def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields is not None and not SIGNING_FIELDS & set(update_fields)):
        return  # a new user has no sockets; a sign-in's last_login ends nothing
    tell_sockets_after_commit(instance.pk)


def _user_deleted(sender, instance, **kwargs):
    tell_sockets_after_commit(instance.pk)


def connect_signals():
    user_logged_out.connect(_signed_out, dispatch_uid="confab-sessions-signed-out")
    User = get_user_model()
    post_save.connect(_user_saved, sender=User, dispatch_uid="confab-sessions-user-saved")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid="confab-sessions-user-deleted")
