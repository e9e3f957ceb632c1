"""A user's send, made real: checked against their limits and quotas, then the
conversation, the user's message and the reply placeholders written in one transaction,
and the request to send upstream built."""

from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import upstream
from conversations.files import context as file_context
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
    File,
    LanguageModel,
    Message,
    Preferences,
    Project,
    Provider,
    SiteSettings,
    branch_through,
)
from conversations.rendering import finished_message
from conversations.tools import registry
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

    # A new conversation starts from the user's defaults: model, system prompt, parameters;
    # in a project, from the project's model and parameters.
    preferences = None if conversation else Preferences.objects.filter(user=user).first()
    preferred = preferences.model_id if preferences else None
    project = None
    if conversation is None and data.get("project"):
        project = Project.objects.for_user(user).filter(id=data["project"]).first()
        if project is None:
            raise EventError("not_found", _("No such project."))
        preferred = project.model_id or preferred
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
    saved = {**(preferences.params if preferences else {}), **(project.params if project else {})}
    defaults = {}
    if saved:  # saved with another model, perhaps: checked against this one
        form = ParamsForm(saved, model=model)
        if not form.is_valid():
            raise EventError(
                "invalid",
                _("Your defaults for new conversations do not suit %(model)s: %(errors)s")
                % {"model": model, "errors": form.error_text(prefix="")},
            )
        defaults = form.params()

    with transaction.atomic():
        created = conversation is None
        if created:
            conversation = Conversation.objects.create(
                owner=user,
                title=_title_from(data["content"]),
                model=model,
                system_prompt=preferences.system_prompt if preferences else "",
                params=defaults,
                project=project,
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
        files = _attachable(user, conversation, data.get("files") or [])
        user_message = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.USER,
            content=data["content"],
            client_id=client_key,
            created=timezone.now(),
            attachments=[_attachment(file) for file in files],
        )
        File.objects.filter(id__in=[f.id for f in files]).update(
            conversation=conversation, message=user_message
        )
        params = {**conversation.params, **data["params"]}
        started = _start_replies(user, conversation, history, user_message, model, params)
    return _prepared(
        conversation, user_message, started, created_conversation=created, edit=bool(sibling_of)
    )


def _attachable(user, conversation, file_ids):
    """The files a send brings, checked: the user's, ready, and in no other conversation
    or project; at most the site's number per message."""
    if not file_ids:
        return []
    limit = SiteSettings.load().files_per_message
    if len(file_ids) > limit:
        raise EventError(
            "invalid", _("files: at most %(count)d files per message.") % {"count": limit}
        )
    files = {f.id: f for f in File.objects.filter(owner=user, id__in=file_ids)}
    for file_id in file_ids:
        file = files.get(file_id)
        elsewhere = file is not None and (
            file.project_id or file.conversation_id not in (None, conversation.id)
        )
        if file is None or elsewhere:
            raise EventError("not_found", _("files: no such file."))
        if file.status == File.Status.PROCESSING:
            raise EventError(
                "file_not_ready",
                _("%(name)s is still being read. Send it once it is ready.") % {"name": file},
            )
        if file.status == File.Status.FAILED:
            raise EventError(
                "invalid",
                _("%(name)s could not be read: %(error)s") % {"name": file, "error": file.error},
            )
    return [files[file_id] for file_id in dict.fromkeys(file_ids)]


def _attachment(file):
    return {"id": str(file.id), "name": file.name, "size": file.size, "kind": file.kind}


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


def _start_replies(
    user, conversation, history, user_message, model, params, *, tools=True, citations=()
):
    """The reply placeholders under `user_message` and the request that will fill them,
    once the user is authorised to make it; the server's tools offered, unless `tools` is
    false; the files in scope whole, or retrieval (conversations.files.context). `citations`:
    the passages the turn's tool steps returned, for the replies to show."""
    if model.provider.status == Provider.Status.PREPARING:
        raise EventError(
            "unavailable",
            _("%(model)s is still being prepared: it can be picked as soon as it is ready.")
            % {"model": model},
        )
    messages = _api_messages(conversation, history, user_message)
    body = upstream.build_body(model, messages, params, user.pk)
    files = list(file_context.in_scope(user, conversation))
    offered = {}
    if tools and (body.get("n") or 1) == 1:  # several choices make no one turn to carry on
        offered = registry.for_conversation(user, conversation, model, files=files)
    grounding = file_context.ground(
        files,
        model,
        messages,
        max_output_tokens(body),
        query=_question(history, user_message),
        tools=all(name in offered for name in file_context.TOOLS),
    )
    if grounding.mode != "tools":
        offered = {k: v for k, v in offered.items() if k not in file_context.TOOLS}
    _offer_tools(body, offered)
    stored = _system_messages(conversation)
    if grounding.message is not None:
        at = len(stored)
        messages = [*messages[:at], grounding.message, *messages[at:]]
        stored = [*stored, grounding.stored()]
    citations = list(citations) or grounding.citations
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
            request={**body, "messages": stored, HISTORY_DROPPED: dropped},
            citations=citations,
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


def prepare_step(user, last, *, steps):
    """The next model call of a tool loop, answering `last` (its step's last tool message)
    with the step's model and parameters; offered no tools once the turn has made the
    site's number of calls, so the model answers with what it has. Runs queries, inside
    the caller's transaction."""
    conversation = last.conversation
    asked = last
    while asked.role == Message.Role.TOOL:
        asked = asked.parent
    model = LanguageModel.objects.available_to(user).filter(id=asked.model_id).first()
    if model is None:
        raise EventError("no_model", _("The model of this turn is no longer available."))
    history = list(conversation.messages.order_by("created"))
    with_tools = steps < SiteSettings.load().tool_steps
    turn = _turn(history, last)
    started = _start_replies(
        user, conversation, history, last, model, asked.params, tools=with_tools,
        citations=file_context.turn_citations(turn),
    )  # fmt: skip
    return _prepared(conversation, None, started)


def _turn(history, last):
    """The messages of the turn that ends at `last`, from the user's message on, in order."""
    by_id = {m.id: m for m in history}
    turn, message = [], last
    while message is not None and message.role != Message.Role.USER:
        turn.append(message)
        message = by_id.get(message.parent_id)
    return list(reversed(turn))


def _question(history, last):
    """What the user asked last, at or above `last`: what retrieval searches for."""
    by_id = {m.id: m for m in history}
    message = last
    while message is not None and message.role != Message.Role.USER:
        message = by_id.get(message.parent_id)
    return message.content if message is not None else ""


def _offer_tools(body, offered):
    """The server's tools, beside the user's own (which keep their names)."""
    own = {tool["function"]["name"] for tool in body.get("tools") or ()}
    extra = [tool.spec() for name, tool in offered.items() if name not in own]
    if extra:
        body["tools"] = [*(body.get("tools") or ()), *extra]


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
    """The project's instructions (while its owner may use the project), then the
    conversation's own system prompt."""
    messages = []
    project = conversation.project
    if project is not None and project.instructions:
        if Project.objects.for_user(conversation.owner).filter(id=project.id).exists():
            messages.append({"role": "system", "content": project.instructions})
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    return messages


def _as_api_messages(history, last):
    """The path from the root to `last` among `history`, as Chat Completions messages."""
    by_id = {m.id: m for m in history}
    branch, message = [last], by_id.get(last.parent_id)
    while message is not None:
        branch.append(message)
        message = by_id.get(message.parent_id)
    branch.reverse()
    return [
        api_message
        for message, following in zip(branch, [*branch[1:], None], strict=True)
        if (api_message := _as_api_message(message, following))
    ]


def _as_api_message(message, following):
    """A message of the branch as the API takes it, or None (an empty reply)."""
    if message.role == Message.Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    # A reply's tool calls go back only with their results after them, as the API needs:
    # calls of the user's own tools, never answered, do not.
    if message.tool_calls and following is not None and following.role == Message.Role.TOOL:
        return {"role": "assistant", "content": message.content or None,
                "tool_calls": message.tool_calls}  # fmt: skip
    if message.content or message.role == Message.Role.USER:
        return {"role": message.role, "content": message.content}
    return None


def request_sent(reply):
    """The body sent upstream for `reply`, its stored part joined with its ancestors again."""
    request = dict(reply.request)
    if not request:
        return None  # replies from before requests were kept
    dropped = request.pop(HISTORY_DROPPED, 0)
    fields = ("id", "parent_id", "role", "content", "tool_calls", "tool_call_id")
    history = list(reply.conversation.messages.only(*fields))
    parent = next((m for m in history if m.id == reply.parent_id), None)
    tree = _as_api_messages(history, parent) if parent else []
    stored = [file_context.restored(m) for m in request.get("messages", [])]
    request["messages"] = [*stored, *tree[dropped:]]
    return request


def _title_from(content):
    title = " ".join(content.split())
    return title if len(title) <= 60 else title[:59].rstrip() + "…"
