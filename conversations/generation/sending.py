"""A user's send, made real: checked against their limits and quotas, then the
conversation, the user's message and the reply placeholders written in one transaction,
and the request to send upstream built."""

from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import upstream
from conversations.forms import ParamsForm
from conversations.generation.admission import (
    EventError,
    authorise,
    check_account,
    max_output_tokens,
)
from conversations.generation.settle import Request
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Preferences,
    Provider,
    SiteSettings,
    branch_through,
)
from conversations.rendering import finished_message
from conversations.usage import estimate_prompt_tokens

# In a reply's stored request: how many of the oldest messages of its branch were left out
# to fit the model's context window (fit_context); never sent upstream.
HISTORY_DROPPED = "_history_dropped"


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
    # For the runner, the reply placeholders, the provider and body of the request that
    # fills them, and that request as the ledger will know it. A retried send has none:
    # it started its reply the first time.
    replies: list = field(default_factory=list)
    provider: Provider | None = None
    body: dict = field(default_factory=dict)
    request: Request | None = None
    created_conversation: bool = False
    duplicate: bool = False


def _prepared(conversation, user_message, started, *, created_conversation=False, edit=False):
    """What a send, edit or regenerate hands the consumer; `conversation` as saved now. An
    edited message comes with the server's HTML: its `< 2 / 2 >` switcher shows at once."""
    summary = {**conversation.to_dict(), "generating": True}
    new = []
    if user_message is not None:
        new = [finished_message(user_message) if edit else user_message.to_dict()]
    return Prepared(
        conversation_id=str(conversation.id),
        conversation=summary,
        created=[*new, *(reply.to_dict() for reply in started["replies"])],
        created_conversation=created_conversation,
        **started,
    )


def prepare_send(user, data, *, sibling_of=None):
    """Everything a send writes, in one transaction: conversation, user message, reply.

    `sibling_of`, a user message, makes the new one its sibling (an edit): same parent,
    the original and its replies kept on their own branch.
    """
    conversations = Conversation.objects.for_user(user)
    client_key = Message.client_key(user.pk, data["client_id"]) if data["client_id"] else None
    if client_key:
        # The key is this user's alone: a match is their own send, unless in a conversation
        # they deleted since.
        existing = (
            Message.objects.filter(client_id=client_key).select_related("conversation").first()
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

    check_account(user)
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
            client_id=client_key,
            created=timezone.now(),
        )
        params = {**conversation.params, **data["params"]}
        started = _start_replies(user, conversation, history, user_message, model, params)
    return _prepared(
        conversation, user_message, started, created_conversation=created, edit=bool(sibling_of)
    )


def prepare_edit(user, data):
    """The user's message said again, differently: a new branch from the same point."""
    mine = Message.objects.for_user(user)
    original = mine.filter(id=data["message"], role=Message.Role.USER).first()
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
    mine = Message.objects.for_user(user).select_related("conversation", "parent")
    earlier = mine.filter(id=data["message"], role=Message.Role.ASSISTANT).first()
    if earlier is None or earlier.parent is None:
        raise EventError("not_found", _("No such reply."))
    if earlier.status == Message.Status.STREAMING:
        raise EventError("busy", _("This reply is still being generated; stop it first."))
    check_account(user)
    conversation = earlier.conversation
    model = data["model"] or default_model(user, conversation, preferred=earlier.model_id)
    if model is None:
        raise EventError("no_model", _("No model is available."))
    params = data["params"] if data["params"] else earlier.params
    check = ParamsForm(params, model=model)
    if not check.is_valid():
        raise EventError("invalid", check.error_text())
    with transaction.atomic():
        history = list(conversation.messages.order_by("created"))
        started = _start_replies(user, conversation, history, earlier.parent, model, check.params())
    return _prepared(conversation, None, started)


def _start_replies(user, conversation, history, user_message, model, params):
    """The reply placeholders under `user_message` and the request that will fill them,
    once the user is authorised to make it."""
    if model.provider.status == Provider.Status.PREPARING:
        raise EventError(
            "unavailable",
            _("%(model)s is still being prepared: it can be picked as soon as it is ready.")
            % {"model": model},
        )
    messages = _api_messages(conversation, history, user_message)
    body = upstream.build_body(model, messages, params, user.pk)
    body["messages"], dropped = fit_context(model, messages, max_output_tokens(body))
    request = Request.to(
        model,
        user_id=user.pk,
        conversation_id=str(conversation.id),
        messages=body["messages"],
    )
    now, prompt_estimate = request.asked_at, request.prompt_estimate
    authorise(user, request, body)
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
            request_id=request.id,
            # The history is left out; request_sent() puts it back (less what was dropped).
            request={
                **body,
                "messages": _system_messages(conversation),
                HISTORY_DROPPED: dropped,
            },
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
    request = replace(request, reply_ids=tuple(reply.id for reply in replies))
    return {"replies": replies, "provider": model.provider, "body": body, "request": request}


def default_model(user, conversation, preferred=None):
    """The model asked for, else the conversation's, else the site's default."""
    available = LanguageModel.objects.available_to(user)
    for model_id in (preferred, conversation.model_id if conversation else None):
        if model_id and (model := available.filter(id=model_id).first()):
            return model
    return SiteSettings.default_among(available)


def _parent_for(history, parent_id, shown_id):
    """The message to answer: the one named, else the end of the branch on show."""
    if parent_id is not None:
        for message in history:
            if message.id == parent_id:
                return message
        raise EventError("not_found", _("No such message."))
    branch = branch_through(history, shown_id)
    return branch[-1] if branch else None


def fit_context(model, messages, output_tokens, *, trim=True):
    """`messages`, fitted to the model's context window with room for `output_tokens` of
    reply, and how many were dropped to fit: the oldest of the branch first, never a
    system message or the last message, and the history then starts with a user's (with
    `trim` false, none: the caller chose them). A prompt that cannot fit is refused before
    any provider is called. Token counts are estimates (conversations.usage), so a window is
    best set a little below the model's."""
    window = model.context_window
    if not window:
        return messages, 0
    system = [m for m in messages if m["role"] == Message.Role.SYSTEM]
    rest = [m for m in messages if m["role"] != Message.Role.SYSTEM]
    sizes = [estimate_prompt_tokens([m]) for m in rest]
    needed = estimate_prompt_tokens(system) + sum(sizes) + output_tokens
    dropped, last = 0, len(rest) - 1 if trim else 0
    while needed > window and dropped < last:
        needed -= sizes[dropped]
        dropped += 1
    while dropped and dropped < last and rest[dropped]["role"] != Message.Role.USER:
        needed -= sizes[dropped]  # a history that starts with a reply would read oddly
        dropped += 1
    if needed > window:
        raise EventError(
            "too_long",
            _(
                "This message and the system prompt need about %(prompt)s tokens, and "
                "%(model)s takes %(window)s in all, up to %(output)s of them for its reply. "
                "Shorten the message or the system prompt, lower max tokens, or choose a "
                "model with a larger context window."
            )
            % {
                "prompt": needed - output_tokens,
                "model": model,
                "window": window,
                "output": output_tokens,
            },
        )
    return system + rest[dropped:], dropped


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
    dropped = request.pop(HISTORY_DROPPED, 0)
    history = list(reply.conversation.messages.only("id", "parent_id", "role", "content"))
    parent = next((m for m in history if m.id == reply.parent_id), None)
    tree = _as_api_messages(history, parent) if parent else []
    request["messages"] = [*request.get("messages", []), *tree[dropped:]]
    return request


def _title_from(content):
    title = " ".join(content.split())
    return title if len(title) <= 60 else title[:59].rstrip() + "…"
