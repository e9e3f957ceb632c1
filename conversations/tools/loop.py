"""The agent loop: a model's calls of the server's tools are run, their results go back to
the model, and so on until it answers or the step limit is reached.

Every stage is a message in the tree, kept and shown as it happens: the assistant message
with its `tool_calls`, then one `tool` message per call (its result, duration, and whether
it is an error), then the model's next message. The loop is driven by what is stored, not
by a task that must survive: a call waiting for approval holds nothing in memory, and
whichever process hears the user's answer (or the reaper, when nobody answers) carries the
turn on. A step's calls run concurrently in the process that planned them.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone, translation

from conversations.fanout import mailbox, publish
from conversations.generation import runner
from conversations.generation.admission import EventError
from conversations.generation.sending import prepare_step
from conversations.models import (
    Conversation,
    Message,
    SiteSettings,
    ToolApproval,
    UsageRecord,
)
from conversations.rendering import finished_message
from conversations.tools import builtins, mcp, registry

logger = logging.getLogger(__name__)

# A call waiting for approval this long is denied.
APPROVAL_EXPIRES = timedelta(minutes=10)

# The tool calls this process is running, by tool message id (str).
running = {}


def _on_stop(message):
    """A stop from a socket of another process: a generation's, or a tool call's here."""
    stop_generation(message)
    if task := running.get(message["message"]):
        task.cancel()


stop_generation = mailbox.handlers["runner.stop"]
mailbox.handlers["runner.stop"] = _on_stop


@dataclass
class Call:
    """A tool call to run: its message, its tool and arguments."""

    message_id: str
    tool: registry.Tool
    arguments: dict


@dataclass
class Step:
    """A step's tool messages, as planned: the payloads to show, the calls to run now."""

    conversation_id: str
    user_id: int
    last_id: str  # the step's last tool message: the next model call answers it
    created: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    context: registry.Context | None = None


async def after_step(generation, settled):
    """Once a model call has settled: the tool messages answering the server's tools it
    called, written and shown (before the call's own end is, so no tab takes the turn for
    over); then what runs them, for the runner to start. None when it called none."""
    if len(settled.done) != 1 or settled.done[0]["status"] != Message.Status.COMPLETE:
        return None  # several choices, or an ending that is not an answer: no loop
    if not settled.done[0]["tool_calls"]:
        return None
    language = generation.request.language
    step = await database_sync_to_async(plan)(settled.done[0]["id"], generation.user_id, language)
    if step is None:
        return None
    events = [{"type": "message.created", "message": message} for message in step.created]
    return await _run(step, events, language)


def plan(reply_id, user_id, language):
    """The tool messages answering a reply's calls, written; None when the turn ends here:
    a call of the user's own tools (set in the conversation's parameters: theirs to run),
    or tools off. In the database thread."""
    reply = Message.objects.select_related("conversation", "model").get(id=reply_id)
    user = get_user_model().objects.get(pk=user_id)
    conversation = reply.conversation
    if reply.model is None:
        return None
    # Only the tools its request offered: past the step limit, none were, and the turn
    # ends there whatever the model calls.
    offered = {t["function"]["name"] for t in reply.request.get("tools") or ()}
    tools = registry.for_conversation(user, conversation, reply.model)
    tools = {name: tool for name, tool in tools.items() if name in offered}
    own = {t["function"]["name"] for t in reply.params.get("tools") or ()}
    names = [call["function"]["name"] for call in reply.tool_calls]
    if not tools or own & set(names):
        return None
    site = SiteSettings.load()
    context = registry.Context(
        user, site.tool_timeout_s, registry.fetch_hosts(), str(conversation.id)
    )
    always = set(conversation.tools_always_allowed)
    now = timezone.now()
    step = Step(str(conversation.id), user_id, "", context=context)
    with transaction.atomic():
        if reply.children.exists():
            return None  # planned already, by another process
        parent = reply
        for i, call in enumerate(reply.tool_calls):
            name = call["function"]["name"]
            tool = tools.get(name)
            arguments, error = _arguments(call["function"]["arguments"])
            if tool is None:
                error = f"There is no tool named {name!r}. The tools are: {', '.join(tools)}."
            if error:
                approval = ""
            elif tool.approval == "ask" and name not in always:
                approval = ToolApproval.PENDING
            else:
                approval = ToolApproval.AUTO
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=Message.Role.TOOL,
                status=Message.Status.COMPLETE if error else Message.Status.STREAMING,
                content=error or "",
                tool_error=bool(error),
                tool_call_id=call["id"] or f"call_{i}",
                tool_name=name,
                tool_calls=[call],
                approval=approval,
                model=reply.model,
                model_name=reply.model_name,
                created=now + timedelta(microseconds=i + 1),
                checkpointed=now,
                completed=now if error else None,
            )
            parent.siblings = [parent.id]  # a call has no versions
            with translation.override(language):
                step.created.append(finished_message(parent))
            if approval == ToolApproval.AUTO:
                step.calls.append(Call(str(parent.id), tool, arguments))
    step.last_id = str(parent.id)
    return step


def _arguments(text):
    """A call's arguments, or why they cannot be used (said to the model)."""
    try:
        arguments = json.loads(text or "{}")
    except ValueError as error:
        return {}, f"The arguments are not valid JSON ({error}); send a JSON object."
    if not isinstance(arguments, dict):
        return {}, "The arguments must be a JSON object."
    return arguments, ""


async def _run(step, events, language):
    """Start a step's calls, side by side, and tell every tab of them (`events`); what is
    left: to wait for the results, then carry the turn on. The calls are running (and a
    stop can reach them) before any tab hears of them, but begin once every tab has."""
    shown = asyncio.Event()
    tasks = []
    for call in step.calls:
        tasks.append(task := asyncio.create_task(_call(call, step, shown)))
        running[call.message_id] = task
    try:
        for event in events:
            await publish(step.conversation_id, event)
    finally:
        shown.set()
    return _complete(step, tasks, language)


async def _complete(step, tasks, language):
    if tasks:
        await asyncio.wait(tasks)
    await carry_on(step.conversation_id, step.last_id, step.user_id, language)


async def _call(call, step, shown):
    """One call, timed and bounded; its result written and shown."""
    status = Message.Status.COMPLETE
    started = time.monotonic()
    citations = []
    try:
        await shown.wait()
        started = time.monotonic()
        async with asyncio.timeout(step.context.timeout_s):
            text, is_error, citations = await call.tool.run(call.arguments, step.context)
    except TimeoutError:
        text, is_error = f"The tool did not answer within {step.context.timeout_s} s.", True
    except (builtins.ToolFailed, mcp.ServerUnavailable) as failure:
        text, is_error = str(failure), True
    except asyncio.CancelledError:
        text, is_error, status = "Stopped before it finished.", True, Message.Status.CANCELLED
    except Exception as error:  # a tool's own bug: the model hears of it, the log too
        logger.warning("tool %s failed: %s", call.tool.name, type(error).__name__)
        text, is_error = f"The tool failed ({type(error).__name__}).", True
    finally:
        running.pop(call.message_id, None)
    duration_ms = int((time.monotonic() - started) * 1000)
    done = await database_sync_to_async(_finish)(call.message_id, text, is_error, status,
                                                 duration_ms, citations)  # fmt: skip
    if done is not None:
        await publish(step.conversation_id, {"type": "message.done", "message": done})


def _finish(message_id, text, is_error, status, duration_ms, citations=()):
    """A call's result, written once; its `message.done` payload (None: ended already)."""
    cap = SiteSettings.load().tool_output_chars
    if len(text) > cap:
        text = f"{text[:cap]}\n\n[Cut at {cap} of {len(text)} characters.]"
    updated = Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(
        content=text,
        tool_error=is_error,
        status=status,
        duration_ms=duration_ms,
        citations=list(citations),
        completed=timezone.now(),
    )
    if not updated:
        return None
    return finished_message(Message.objects.get(id=message_id))


async def carry_on(conversation_id, last_id, user_id, language):
    """The turn's next model call, once every call of the step has its result: unless
    one was stopped, or the next call was made already. A refusal (a quota, the model
    gone) ends the turn with a failed reply that says why, in `language`. A process
    shutting down makes no new call: the reaper of another carries the step on."""
    if not runner.accepting:
        return
    language = language or settings.LANGUAGE_CODE
    try:
        with translation.override(language):
            prepared = await database_sync_to_async(_next)(last_id, user_id)
    except EventError as refusal:
        # No tab asked for this call: the refusal is the turn's last message, kept.
        refused = await database_sync_to_async(_refused)(last_id, str(refusal), language)
        for event in ("message.created", "message.done"):
            await publish(conversation_id, {"type": event, "message": refused})
        return
    if prepared is not None:
        await runner.launch(prepared, user_id=user_id, language=language, after=after_step)


def _next(last_id, user_id):
    last = _last_of_step(Message.objects.select_related("conversation").get(id=last_id))
    user = get_user_model().objects.get(pk=user_id)
    with transaction.atomic():
        # One at a time per conversation: two calls that end together, in two
        # processes, would both find the step done.
        Conversation.objects.select_for_update().filter(id=last.conversation_id).exists()
        step = _step_of(last)
        if any(m.status != Message.Status.COMPLETE for m in step):
            return None  # still running, waiting for approval, or stopped
        if Message.objects.filter(parent_id=last.id).exists():
            return None  # carried on already
        return prepare_step(user, last, steps=_steps_taken(last))


def _refused(last_id, why, language):
    """The turn's next model call, refused (a quota, a limit): a failed reply saying why."""
    last = Message.objects.get(id=last_id)
    asked = last
    while asked.role == Message.Role.TOOL:
        asked = asked.parent
    refused = Message.objects.create(
        conversation_id=last.conversation_id,
        parent=last,
        role=Message.Role.ASSISTANT,
        status=Message.Status.FAILED,
        error=why,
        model=asked.model,
        model_name=asked.model_name,
        params=asked.params,
        completed=timezone.now(),
    )
    with translation.override(language):
        return finished_message(refused)


def _step_of(last):
    """The tool messages of a step, from its last one up to the model's message."""
    step, message = [], last
    while message is not None and message.role == Message.Role.TOOL:
        step.append(message)
        message = message.parent
    return step


def _steps_taken(last):
    """How many model calls this turn has made: its assistant messages since the user's."""
    count, message = 0, last
    while message is not None and message.role != Message.Role.USER:
        count += message.role == Message.Role.ASSISTANT
        message = message.parent
    return count


async def decide(user, message_id, allow, always, language):
    """The user's answer to a call waiting for approval, written and shown to every tab;
    what follows (the call run in this process, or the model told it was denied, then the
    turn carried on), to run in the background."""
    answered = await database_sync_to_async(_decide)(user, message_id, allow, always, language)
    if answered is None:
        raise EventError("not_found", translation.gettext("No call waits for approval there."))
    message, step = answered
    if step is not None:
        return await _run(step, [{"type": "message.updated", "message": message}], language)
    await publish(message["conversation"], {"type": "message.done", "message": message})
    return carry_on(message["conversation"], message["id"], user.pk, language)


def _decide(user, message_id, allow, always, language):
    with transaction.atomic():
        pending = Message.objects.for_user(user).filter(
            id=message_id, role=Message.Role.TOOL, approval=ToolApproval.PENDING,
            status=Message.Status.STREAMING,
        )  # fmt: skip
        if allow:
            if not pending.update(approval=ToolApproval.APPROVED, checkpointed=timezone.now()):
                return None
        elif not pending.update(
            approval=ToolApproval.DENIED,
            status=Message.Status.COMPLETE,
            content="The user denied this call: it did not run.",
            tool_error=True,
            completed=timezone.now(),
        ):
            return None
        message = Message.objects.select_related("conversation", "model").get(id=message_id)
        conversation = message.conversation
        if allow and always and message.tool_name not in conversation.tools_always_allowed:
            conversation.tools_always_allowed = [
                *conversation.tools_always_allowed, message.tool_name,
            ]  # fmt: skip
            conversation.save(update_fields=["tools_always_allowed"])
    with translation.override(language):
        shown = finished_message(message)
    if not allow:
        return shown, None
    tool = registry.for_conversation(user, conversation, message.model).get(message.tool_name)
    if tool is None:  # switched off since it was asked for: the model hears so
        done = _finish(message_id, "The tool is no longer available.", True,
                       Message.Status.COMPLETE, 0)  # fmt: skip
        return done, None
    arguments, _ = _arguments(message.tool_calls[0]["function"]["arguments"])
    site = SiteSettings.load()
    step = Step(
        str(conversation.id),
        user.pk,
        str(_last_of_step(message).id),
        calls=[Call(str(message.id), tool, arguments)],
        context=registry.Context(
            user, site.tool_timeout_s, registry.fetch_hosts(), str(conversation.id)
        ),
    )
    return shown, step


def _last_of_step(message):
    while child := Message.objects.filter(parent=message, role=Message.Role.TOOL).first():
        message = child
    return message


async def stop(message):
    """Stop a tool message's call: cancel it if this process runs it; a call waiting for
    approval is ended as denied. Either way the turn goes no further."""
    if task := running.get(str(message.id)):
        task.cancel()
        return True
    if message.approval == ToolApproval.PENDING:
        done = await database_sync_to_async(_finish)(
            str(message.id), "Stopped before it was approved: it did not run.", True,
            Message.Status.CANCELLED, 0,
        )  # fmt: skip
        if done is not None:
            await publish(str(message.conversation_id), {"type": "message.done", "message": done})
        return True
    return False


def expire_approvals():
    """Calls that waited longer than APPROVAL_EXPIRES: denied, as if the user had said no;
    the steps they end, to carry on. Runs queries."""
    cutoff = timezone.now() - APPROVAL_EXPIRES
    stale = Message.objects.filter(
        role=Message.Role.TOOL, approval=ToolApproval.PENDING,
        status=Message.Status.STREAMING, created__lt=cutoff,
    ).select_related("conversation")  # fmt: skip
    ended = []
    for message in stale:
        updated = Message.objects.filter(id=message.id, approval=ToolApproval.PENDING).update(
            approval=ToolApproval.EXPIRED,
            status=Message.Status.COMPLETE,
            content="Not approved within 10 minutes: it did not run.",
            tool_error=True,
            completed=timezone.now(),
        )
        if updated:
            message.refresh_from_db()
            ended.append((finished_message(message), message.conversation.owner_id))
    return ended


async def expire():
    """Expire unanswered approvals, tell every tab, and carry their turns on; then the
    turns whose process ended between a step's last result and the next model call."""
    for done, user_id in await database_sync_to_async(expire_approvals)():
        await publish(done["conversation"], {"type": "message.done", "message": done})
        await carry_on(done["conversation"], done["id"], user_id, None)
    for conversation_id, last_id, user_id in await database_sync_to_async(stalled_steps)():
        await carry_on(conversation_id, last_id, user_id, None)


def stalled_steps():
    """Steps whose every result came in a while ago (CONFAB_STALE_AFTER_S), yet no model
    call followed: (conversation id, the step's last tool message id, owner id). A turn
    stopped, or waiting, has a message that is not complete, and carry_on leaves it be.
    A call that followed, since deleted by the user, left its row in the ledger: that
    step is not carried on again. Only the last hour's: a step whose model was since
    removed is not tried for ever."""
    now = timezone.now()
    called_after = UsageRecord.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        source=UsageRecord.Source.CHAT,
        created__gte=OuterRef("completed"),
    )
    leaves = Message.objects.filter(
        role=Message.Role.TOOL,
        status=Message.Status.COMPLETE,
        completed__lt=now - timedelta(seconds=settings.CONFAB_STALE_AFTER_S),
        completed__gt=now - timedelta(hours=1),
        children__isnull=True,
    ).exclude(Exists(called_after))
    leaves = leaves.select_related("conversation")
    return [(str(m.conversation_id), str(m.id), m.conversation.owner_id) for m in leaves]
