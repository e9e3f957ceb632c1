"""Admission: whether a new generation may start, decided in one place for every caller.

`admit()` is the one entry point (the websocket consumer calls it; the gateway will too).
It refuses at once, without a database trip, when this process is shutting down, is at its
cap of replies, or its database thread is backed up. Otherwise it runs the caller's
`prepare` in the database thread, where `authorise()` checks the user, inside the
transaction that starts the reply: the account is active, within its send rate, its replies
at once and its quotas. Every refusal is an `EventError` that says why, and when to retry.

Quotas are never exceeded: a request reserves what it may cost at most (its prompt and its
maximum output, in tokens and in money) as its row in the usage ledger before the provider
is called, and settle() turns the reservation into what it really cost. The check and the
reservation hold the user's row locked, so concurrent sends are admitted one after another.
"""

import contextlib
import itertools
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations import quotas
from conversations.gateway.relay import relays
from conversations.generation import runner
from conversations.models import Message, UsageRecord
from conversations.usage import Usage

RATE_WINDOW_S = 60
RETRY_AFTER_S = 5


class EventError(Exception):
    """A request that cannot be carried out: answered with an `error` event (its `code`, its
    message and `extra` fields such as `retry_after`), never a crash."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


class SendQueue:
    """The sends of this process waiting for, or in, their database hop, oldest first.

    All database work of a process runs on one thread, so when the core is full sends wait
    there behind each other; how long the oldest has waited is what a new send would add
    to its time to first token. Past CONFAB_MAX_SEND_WAIT_MS, with a few queued (one slow
    page alone is not overload), new sends are refused at once rather than queued.
    """

    BACKLOG = 5

    def __init__(self):
        self.since = {}  # token -> when the send began waiting, in arrival order
        self.tokens = itertools.count()

    @contextlib.contextmanager
    def waiting(self):
        token = next(self.tokens)
        self.since[token] = time.monotonic()
        try:
            yield
        finally:
            del self.since[token]

    def backed_up(self):
        limit_ms = settings.CONFAB_MAX_SEND_WAIT_MS
        if not limit_ms or len(self.since) < self.BACKLOG:
            return False
        oldest = next(iter(self.since.values()))
        return (time.monotonic() - oldest) * 1000 > limit_ms


send_queue = SendQueue()


async def admit(prepare, *args):
    """Start a generation: `prepare(*args)`, run in the database thread, unless this process
    cannot take it now. `prepare` calls authorise() before it writes anything."""
    refuse_when_overloaded()
    with send_queue.waiting():
        return await database_sync_to_async(prepare)(*args)


def refuse_when_overloaded():
    """Refuse at once, on the event loop: queueing would only add to everyone's wait."""
    if not runner.accepting:
        raise EventError(
            "unavailable", _("The server is restarting. Try again."), retry_after=RETRY_AFTER_S
        )
    running = len(runner.generations_running()) + len(relays)
    if running >= settings.CONFAB_MAX_GENERATIONS_PER_PROCESS or send_queue.backed_up():
        raise EventError(
            "busy", _("The server is busy. Try again shortly."), retry_after=RETRY_AFTER_S
        )


def check_account(user, api_key=None):
    """The account may still send: active, and within its send rate (and the key's).
    `user` as read in this database hop (the socket's session check, the key's lookup).
    Cheap: call it before reading what the send needs."""
    if not user.is_active:
        # A tab opened before an administrator disabled the account.
        raise EventError("signed_out", _("Your account is disabled. Ask an administrator."))
    _check_rate(f"user:{user.pk}", settings.CONFAB_USER_SENDS_PER_MINUTE)
    if api_key is not None and api_key.requests_per_minute is not None:
        _check_rate(f"key:{api_key.pk}", api_key.requests_per_minute)


def authorise(user, request, body, *, api_key=None):
    """The user may start this request now: within their replies at once (and the key's,
    for the gateway) and their quotas; its reservation is then written. Call it in the
    transaction that starts the request."""
    lock(user)
    limits = list(quotas.quotas_for(user))
    _check_running(user, limits, api_key)
    reserve(user, request, body, limits=limits)


def reserve(user, request, body, *, limits=None):
    """Refuse a request that could take the user past a quota; else hold what it may cost
    at most in the ledger until it settles. Call it in a transaction, after `lock(user)`
    (authorise does both)."""
    outputs = max_output_tokens(body) * (body.get("n") or 1)
    most = Usage(request.prompt_estimate, outputs, request.prompt_estimate + outputs)
    price = request.price_in_effect()
    cost = price.cost(most) if price else 0
    limits = list(quotas.quotas_for(user)) if limits is None else limits
    if limits:
        _check_quotas(user, most, cost, price.currency if price else "", limits)
    reservation = request.ledger_row(
        status=Message.Status.STREAMING,
        estimated=True,
        cost=cost,
        currency=price.currency if price else "USD",
        created=request.asked_at,
        **most.as_fields(),
    )
    reservation.save()


def max_output_tokens(body):
    """The most a request may generate per choice: the bound it is sent with."""
    return body.get("max_completion_tokens") or body.get("max_tokens") or 0


def lock(user):
    """Hold the user's row until the transaction ends: their checks and reservations are
    made one after another. SQLite needs no query for it: its IMMEDIATE transactions are
    serialised already (chatsite.settings), each holding the database's one write lock."""
    if connection.features.has_select_for_update:
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))


def _check_rate(who, per_minute):
    """At most `per_minute` sends a minute by `who`: counted in Redis across processes when
    REDIS_URL is set, per process otherwise (one process by default)."""
    window = int(time.time() // RATE_WINDOW_S)
    key = f"confab:sends:{who}:{window}"
    cache.add(key, 0, timeout=RATE_WINDOW_S * 2)
    if cache.incr(key) > per_minute:
        retry_after = RATE_WINDOW_S - int(time.time() % RATE_WINDOW_S)
        raise EventError(
            "rate_limited",
            _("You have sent %(count)d messages this minute. Try again in %(seconds)d s.")
            % {"count": per_minute, "seconds": retry_after},
            retry_after=retry_after,
        )


def _check_running(user, limits, api_key=None):
    """Refuse a user at their limit of requests at once, or a key at its own: requests in
    flight are the reservations still streaming (a title, written for a reply, aside)."""
    in_flight = UsageRecord.objects.filter(user=user, status=Message.Status.STREAMING).exclude(
        source=UsageRecord.Source.TITLE
    )
    running = in_flight.count()
    if running >= quotas.max_concurrent(user, limits):
        raise EventError(
            "too_many",
            ngettext(
                "You already have %(count)d reply generating. Wait for it to finish "
                "or stop it, then try again.",
                "You already have %(count)d replies generating. Wait for one to finish "
                "or stop it, then try again.",
                running,
            )
            % {"count": running},
            retry_after=RETRY_AFTER_S,
        )
    if api_key is not None and api_key.max_concurrent is not None:
        if in_flight.filter(api_key=api_key).count() >= api_key.max_concurrent:
            raise EventError(
                "too_many",
                _("This key already has %(count)d requests running.")
                % {"count": api_key.max_concurrent},
                retry_after=RETRY_AFTER_S,
            )


def _check_quotas(user, most, cost, currency, limits):
    try:
        quotas.check(
            user,
            expected_tokens=most.total_tokens,
            expected_cost=cost,
            currency=currency,
            limits=limits,
        )
    except quotas.QuotaExceeded as refusal:
        raise EventError(
            "quota_exceeded",
            str(refusal),
            used=str(refusal.used),
            limit=str(refusal.limit),
            resets_at=refusal.resets_at.isoformat(),
        ) from None
