"""What a user does to a conversation: export, rename, pin, archive, delete and restore,
and its settings."""

import json

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from conversations.fanout import publish_to_user
from conversations.forms import ConversationSettingsForm, ConversationToolsForm, RenameForm
from conversations.models import Conversation, Message
from conversations.tools.registry import available


def conversation_or_404(request, conversation_id):
    return get_object_or_404(Conversation.objects.for_user(request.user), id=conversation_id)


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def export_json(request, conversation_id):
    conversation = conversation_or_404(request, conversation_id)
    return JsonResponse(
        conversation.export(),
        json_dumps_params={"ensure_ascii": False, "indent": 2},
        headers={"Content-Disposition": f'attachment; filename="{_filename(conversation)}.json"'},
    )


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def export_markdown(request, conversation_id):
    conversation = conversation_or_404(request, conversation_id)
    lines = [f"# {conversation}", ""]
    if conversation.system_prompt:
        lines += ["**System**", "", conversation.system_prompt, ""]
    for message in conversation.branch():
        if message.role == Message.Role.TOOL:
            lines += _tool_markdown(message)
            continue
        heading = {"user": _("User"), "assistant": _("Assistant")}.get(message.role, message.role)
        if message.model_label:
            heading += f" ({message.model_label})"
        lines += [f"## {heading}", ""]
        if message.reasoning:
            lines += [
                "<details><summary>" + _("Reasoning") + "</summary>",
                "",
                message.reasoning,
                "",
                "</details>",
                "",
            ]
        if message.attachments:
            names = ", ".join(file["name"] for file in message.attachments)
            lines += [f"*{_('Files')}: {names}*", ""]
        lines += [message.content, ""]
        if message.citations:
            lines += _citations_markdown(message.citations)
        if message.tool_calls:
            lines += [
                "```json",
                json.dumps(message.tool_calls, indent=2, ensure_ascii=False),
                "```",
                "",
            ]
        if message.role == "assistant":
            lines += [
                f"*{message.get_status_display()}, "
                f"{message.total_tokens} tokens"
                f"{' (estimated)' if message.usage_estimated else ''}*",
                "",
            ]
    return HttpResponse(
        "\n".join(lines),
        content_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_filename(conversation)}.md"'},
    )


def _citations_markdown(citations):
    """A reply's sources: each passage's file and page, then the passage quoted."""
    lines = [f"**{_('Sources')}**", ""]
    for cited in citations:
        where = cited["name"] + (f", {_('page')} {cited['page']}" if cited.get("page") else "")
        lines.append(f"[{cited['n']}] {where}")
        lines += ["", *[f"> {line}" for line in cited["text"].splitlines()], ""]
    return lines


def _tool_markdown(message):
    """A tool's call and result: its arguments, then what it returned, fenced as text."""
    (block,) = message.tool_call_blocks or [{"arguments": ""}]
    lines = [f"## {_('Tool')}: {message.tool_name}", ""]
    if block["arguments"]:
        lines += ["```json", block["arguments"], "```", ""]
    label = _("Error") if message.tool_error else _("Result")
    fence = "````" if "```" in message.content else "```"
    return [*lines, f"**{label}**", "", f"{fence}text", message.content, fence, ""]


def _filename(conversation):
    return slugify(conversation.title)[:50] or f"conversation-{conversation.id}"


@login_required
@require_POST
def rename(request, conversation_id):
    conversation = conversation_or_404(request, conversation_id)
    form = RenameForm(request.POST, instance=conversation)
    if form.is_valid():
        form.instance.auto_title = False
        form.save()
        _tell_other_tabs(conversation)
    else:
        flash.error(request, " ".join(form.errors.get("title", [])))
    return redirect("conversation", conversation.id)


@login_required
@require_POST
def toggle(request, conversation_id, flag):
    """Pin or unpin, archive or unarchive."""
    conversation = conversation_or_404(request, conversation_id)
    setattr(conversation, flag, not getattr(conversation, flag))
    conversation.save(update_fields=[flag])
    _tell_other_tabs(conversation)
    if flag == "archived":
        said = (
            _("“%(title)s” was archived: it is listed under Archived, below your conversations.")
            if conversation.archived
            else _("“%(title)s” is back among your conversations.")
        )
        flash.success(request, said % {"title": conversation})
    return redirect("conversation", conversation.id)


@login_required
@require_POST
def delete(request, conversation_id):
    conversation = conversation_or_404(request, conversation_id)
    conversation.deleted = timezone.now()
    conversation.save(update_fields=["deleted"])
    _tell_other_tabs(conversation)
    flash.success(request, _("“%(title)s” was deleted.") % {"title": conversation})
    request.session["undo_delete"] = str(conversation.id)  # the Undo button, once
    return redirect("chat")


@login_required
@require_POST
def restore(request, conversation_id):
    conversation = get_object_or_404(
        Conversation.objects.deleted_by(request.user), id=conversation_id
    )
    conversation.deleted = None
    conversation.save(update_fields=["deleted"])
    _tell_other_tabs(conversation)
    return redirect("conversation", conversation.id)


def _tell_other_tabs(conversation):
    summary = {**conversation.to_dict(), "deleted": conversation.deleted is not None}
    async_to_sync(publish_to_user)(
        conversation.owner_id, {"type": "conversation.updated", "conversation": summary}
    )


@login_required
@cache_control(private=True, no_store=True)
def conversation_settings(request, conversation_id):
    """The settings page, or with `?panel` only its forms, for the chat page's panel."""
    conversation = conversation_or_404(request, conversation_id)
    form = ConversationSettingsForm(request.POST or None, instance=conversation, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        _tell_other_tabs(conversation)
        flash.success(request, _("Settings saved."))
        return redirect("conversation", conversation.id)
    template = "conversations/settings.html"
    if "panel" in request.GET:
        template += "#panel"
    tools = ConversationToolsForm(conversation=conversation, available=available(request.user))
    context = {"conversation": conversation, "form": form, "tools_form": tools}
    return render(request, template, context)


@login_required
@require_POST
def conversation_tools(request, conversation_id):
    """Which of the server's tools this conversation's models may call."""
    conversation = conversation_or_404(request, conversation_id)
    form = ConversationToolsForm(
        request.POST, conversation=conversation, available=available(request.user)
    )
    if form.is_valid():
        form.save()
        flash.success(request, _("Tools saved."))
        return redirect("conversation", conversation.id)
    form_page = ConversationSettingsForm(instance=conversation, user=request.user)
    context = {"conversation": conversation, "form": form_page, "tools_form": form}
    return render(request, "conversations/settings.html", context, status=400)


@login_required
@require_POST
def reset_settings(request, conversation_id):
    """Forget the conversation's request fields: the model's defaults apply again."""
    conversation = conversation_or_404(request, conversation_id)
    conversation.params = {}
    conversation.save(update_fields=["params"])
    flash.success(request, _("Request fields cleared: the model's defaults apply."))
    return redirect("conversation", conversation.id)
