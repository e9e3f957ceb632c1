"""A user's send, made real: checked against their limits and quotas, then the
conversation, the user's message and the reply placeholders written in one transaction,
and the request to send upstream built."""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations import quotas, upstream
from conversations.forms import ParamsForm
from conversations.models import Conversation, LanguageModel, Message, Preferences, branch_through
from conversations.usage import Usage, estimate_prompt_tokens


class EventError(Exception):
    """A client event that cannot be carried out; answered with an `error` event."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


@dataclass
class Prepared:
    """A send, edit or regenerate made real, as the async side needs it.

    Built in the database thread: the payloads are plain data already, so nothing after
    the hop touches a lazy relation (which would run a query in the event loop).
    """

    conversation_id: str
    # The sidebar's summary of the conversation (Conversation.to_dict), generating now.
    conversation: dict
    # `message.created` payloads: the user's message (unless regenerating), then each reply.
    created: list
    # The reply placeholders and the request that fills them, for the runner; a retried
    # send has none (it started its reply the first time).
    replies: list = field(default_factory=list)
    model: LanguageModel | None = None
    messages: list = field(default_factory=list)
    body: dict = field(default_factory=dict)
    created_conversation: bool = False
    duplicate: bool = False


def _prepared(conversation, user_message, started, *, created_conversation=False):
    """What a send, edit or regenerate hands the consumer; `conversation` as saved now."""
    summary = {**conversation.to_dict(), "generating": True}
    new = [user_message] if user_message is not None else []
    return Prepared(
        conversation_id=str(conversation.id),
        conversation=summary,
        created=[message.to_dict() for message in (*new, *started["replies"])],
        created_conversation=created_conversation,
        **started,
    )


def prepare_send(user, data, *, sibling_of=None):
    """Everything a send writes, in one transaction: conversation, user message, reply.

    `sibling_of`, a user message, makes the new one its sibling (an edit): same parent,
    the original and its replies kept on their own branch.
    """
    conversations = Conversation.objects.for_user(user)
    if data["client_id"]:
        existing = (
            Message.objects.filter(client_id=data["client_id"])
            .select_related("conversation")
            .first()
        )
        if existing is not None and not conversations.filter(pk=existing.conversation_id).exists():
            raise EventError("invalid", _("client_id: this id is already taken."))
        if existing is not None:  # a send retried: what it made the first time
            conversation = existing.conversation
            replies = existing.children.order_by("created")
            return Prepared(
                conversation_id=str(conversation.id),
                conversation={},
                created=[message.to_dict() for message in (existing, *replies)],
                duplicate=True,
            )

    _check_user(user)
    conversation = None
    if data["conversation"]:
        conversation = (
            conversations.select_related("model__provider").filter(id=data["conversation"]).first()
        )
        if conversation is None:
            raise EventError("not_found", _("No such conversation."))

    # A new conversation starts from the user's defaults: model, system prompt, parameters.
    preferences = None if conversation else Preferences.objects.filter(user=user).first()
    preferred = preferences.model_id if preferences else None
    model = data["model"] or default_model(user, conversation, preferred=preferred)
    if model is None:
        raise EventError(
            "no_model", _("No model is available. An administrator must add a provider first.")
        )
    if data["model"] is None:
        # The form checked the parameters against no model; check them against this one.
        params = ParamsForm(data["params"], model=model)
        if not params.is_valid():
            raise EventError("invalid", params.error_text())
    defaults = ParamsForm(preferences.params if preferences else {}, model=model)
    if not defaults.is_valid():  # saved with another model, perhaps
        raise EventError(
            "invalid",
            _("Your defaults for new conversations do not suit %(model)s: %(errors)s")
            % {"model": model, "errors": defaults.error_text(prefix="")},
        )

    with transaction.atomic():
        limits = _check_running(user)
        created = conversation is None
        if created:
            conversation = Conversation.objects.create(
                owner=user,
                title=_title_from(data["content"]),
                model=model,
                system_prompt=preferences.system_prompt if preferences else "",
                params=defaults.params(),
            )
            history = []
        else:
            history = list(conversation.messages.order_by("created"))
        if sibling_of is not None:
            parent = next((m for m in history if m.id == sibling_of.parent_id), None)
        else:
            parent = _parent_for(history, data["parent"], conversation.shown_id)
        if parent is not None and parent.status == Message.Status.STREAMING:
            raise EventError("busy", _("A reply is still being generated; stop it or wait."))
        user_message = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.USER,
            content=data["content"],
            client_id=data["client_id"],
            created=timezone.now(),
        )
        params = {**conversation.params, **data["params"]}
        started = _start_replies(user, conversation, history, user_message, model, params, limits)
    return _prepared(conversation, user_message, started, created_conversation=created)


def prepare_edit(user, data):
    """The user's message said again, differently: a new branch from the same point."""
    original = (
        Message.objects.filter(
            id=data["message"],
            role=Message.Role.USER,
            conversation__in=Conversation.objects.for_user(user),
        )
        .select_related("conversation")
        .first()
    )
    if original is None:
        raise EventError("not_found", _("No such message."))
    send = {
        "conversation": original.conversation_id,
        "content": data["content"],
        "parent": None,
        "model": None,
        "params": {},
        "client_id": data["client_id"],
    }
    return prepare_send(user, send, sibling_of=original)


def prepare_regenerate(user, data):
    """Another reply to the same user message: a sibling of the one asked about."""
    earlier = (
        Message.objects.filter(
            id=data["message"],
            role=Message.Role.ASSISTANT,
            conversation__in=Conversation.objects.for_user(user),
        )
        .select_related("conversation", "parent")
        .first()
    )
    if earlier is None or earlier.parent is None:
        raise EventError("not_found", _("No such reply."))
    if earlier.status == Message.Status.STREAMING:
        raise EventError("busy", _("This reply is still being generated; stop it first."))
    _check_user(user)
    conversation = earlier.conversation
    model = data["model"] or default_model(user, conversation, preferred=earlier.model_id)
    if model is None:
        raise EventError("no_model", _("No model is available."))
    params = data["params"] if data["params"] else earlier.params
    check = ParamsForm(params, model=model)
    if not check.is_valid():
        raise EventError("invalid", check.error_text())
    with transaction.atomic():
        limits = _check_running(user)
        history = list(conversation.messages.order_by("created"))
        started = _start_replies(
            user, conversation, history, earlier.parent, model, check.params(), limits
        )
    return _prepared(conversation, None, started)


def _check_user(user):
    if not get_user_model().objects.filter(pk=user.pk, is_active=True).exists():
        # A tab opened before an administrator disabled the account.
        raise EventError("signed_out", _("Your account is disabled. Ask an administrator."))
    check_rate(user)


def _check_running(user):
    """Refuse a user at their limit of replies at once; their quotas, for the next checks."""
    limits = list(quotas.quotas_for(user))
    running = (
        Message.objects.filter(conversation__owner=user, status=Message.Status.STREAMING)
        .values("parent_id")
        .distinct()
        .count()
    )
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
            retry_after=5,
        )
    return limits


def _start_replies(user, conversation, history, user_message, model, params, limits):
    """The reply placeholders under `user_message` and the request that will fill them."""
    now = timezone.now()
    messages = _api_messages(conversation, history, user_message)
    body = upstream.build_body(model, messages, params, user.pk)
    prompt_estimate = estimate_prompt_tokens(messages)
    _check_quotas(user, model, body, prompt_estimate, now, limits)
    # With n > 1 each choice becomes a reply of its own, siblings under the message.
    replies = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            parent=user_message,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=model,
            model_name=model.upstream_id,
            params=params,
            # The history is left out; request_sent() puts it back.
            request={**body, "messages": _system_messages(conversation)},
            created=now + timedelta(microseconds=index + 1),
            checkpointed=now,
            # An estimate until the provider reports usage (or never does).
            prompt_tokens=prompt_estimate,
            total_tokens=prompt_estimate,
            usage_estimated=True,
        )
        for index in range(body.get("n") or 1)
    )
    # The new reply is what the conversation shows now, on every page load.
    conversation.updated, conversation.model, conversation.shown = now, model, replies[0]
    conversation.save(update_fields=["updated", "model", "shown"])
    return {"replies": replies, "model": model, "messages": messages, "body": body}


def _check_quotas(user, model, body, prompt_estimate, now, limits):
    if not limits:
        return  # no quota applies to this user: nothing to price
    replies = body.get("n") or 1
    output = (body.get("max_tokens") or quotas.EXPECTED_OUTPUT_TOKENS) * replies
    price = model.price_at(now)
    expected = Usage(prompt_estimate, output, prompt_estimate + output)
    try:
        quotas.check(
            user,
            expected_tokens=expected.total_tokens,
            expected_cost=price.cost(expected) if price else 0,
            currency=price.currency if price else "",
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


def check_rate(user):
    """At most CONFAB_USER_SENDS_PER_MINUTE sends a minute per user: counted in Redis across
    processes when REDIS_URL is set, per process otherwise (one process by default)."""
    window = int(time.time() // 60)
    key = f"confab:sends:{user.pk}:{window}"
    cache.add(key, 0, timeout=120)
    sends = cache.incr(key)
    if sends > settings.CONFAB_USER_SENDS_PER_MINUTE:
        retry_after = 60 - int(time.time() % 60)
        raise EventError(
            "rate_limited",
            _("You have sent %(count)d messages this minute. Try again in %(seconds)d s.")
            % {"count": settings.CONFAB_USER_SENDS_PER_MINUTE, "seconds": retry_after},
            retry_after=retry_after,
        )


def default_model(user, conversation, preferred=None):
    """The model asked for, else the conversation's, else the first the user may use."""
    available = LanguageModel.objects.available_to(user)
    for model_id in (preferred, conversation.model_id if conversation else None):
        if model_id and (model := available.filter(id=model_id).first()):
            return model
    return available.first()


def _parent_for(history, parent_id, shown_id):
    """The message to answer: the one named, else the end of the branch on show."""
    if parent_id is not None:
        for message in history:
            if message.id == parent_id:
                return message
        raise EventError("not_found", _("No such message."))
    branch = branch_through(history, shown_id)
    return branch[-1] if branch else None


def _api_messages(conversation, history, user_message):
    """The branch that ends at the user's message, as Chat Completions messages."""
    return _system_messages(conversation) + _as_api_messages(history, user_message)


def _system_messages(conversation):
    if not conversation.system_prompt:
        return []
    return [{"role": "system", "content": conversation.system_prompt}]


def _as_api_messages(history, last):
    """The path from the root to `last` among `history`, as Chat Completions messages."""
    by_id = {m.id: m for m in history}
    branch, message = [last], by_id.get(last.parent_id)
    while message is not None:
        branch.append(message)
        message = by_id.get(message.parent_id)
    return [
        {"role": message.role, "content": message.content}
        for message in reversed(branch)
        if message.content or message.role == Message.Role.USER
    ]


def request_sent(reply):
    """The body sent upstream for `reply`, its stored part joined with its ancestors again."""
    request = dict(reply.request)
    if not request:
        return None  # replies from before requests were kept
    history = list(reply.conversation.messages.only("id", "parent_id", "role", "content"))
    parent = next((m for m in history if m.id == reply.parent_id), None)
    tree = _as_api_messages(history, parent) if parent else []
    request["messages"] = [*request.get("messages", []), *tree]
    return request


def _title_from(content):
    title = " ".join(content.split())
    return title if len(title) <= 60 else title[:59].rstrip() + "…"
