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
from conversations.forms import ConversationSettingsForm, RenameForm
from conversations.models import Conversation


def conversation_or_404(request, conversation_id):
    return get_object_or_404(Conversation.objects.for_user(request.user), id=conversation_id)


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def export_json(request, conversation_id):
    conversation = conversation_or_404(request, conversation_id)
    return JsonResponse(
        _export(conversation),
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
        lines += [message.content, ""]
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


def _export(conversation):
    return {
        "conversation": conversation.to_dict(),
        "messages": [
            m.to_dict() for m in conversation.messages.select_related("model").order_by("created")
        ],
    }


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
    return render(request, template, {"conversation": conversation, "form": form})


@login_required
@require_POST
def reset_settings(request, conversation_id):
    """Forget the conversation's request fields: the model's defaults apply again."""
    conversation = conversation_or_404(request, conversation_id)
    conversation.params = {}
    conversation.save(update_fields=["params"])
    flash.success(request, _("Request fields cleared: the model's defaults apply."))
    return redirect("conversation", conversation.id)
