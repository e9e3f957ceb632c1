import json
import uuid
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from conversations import quotas, reports, sending
from conversations.fanout import publish_to_user
from conversations.forms import (
    ConversationSettingsForm,
    PreferencesForm,
    RenameForm,
    SignupForm,
)
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Preferences,
    SiteSettings,
    UsageRecord,
)


def _uuid_or_none(value):
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _conversation_or_404(request, conversation_id):
    return get_object_or_404(Conversation.objects.for_user(request.user), id=conversation_id)


@login_required
@require_GET
def chat(request, conversation_id=None):
    conversation = _conversation_or_404(request, conversation_id) if conversation_id else None
    if conversation and "show" in request.GET:
        # The `< 2 / 3 >` switcher: show (and remember) the branch through that message.
        shown = conversation.messages.filter(id=_uuid_or_none(request.GET["show"])).first()
        url = reverse("conversation", args=[conversation.id])
        if shown is not None:
            Conversation.objects.filter(id=conversation.id).update(shown=shown)
            conversation.shown = shown
            branch = [m.id for m in conversation.branch()]
            if len(branch) - branch.index(shown.id) > settings.CONFAB_MESSAGES_SHOWN:
                url += "?earlier=all"  # a search hit far back: it must be on the page
        return redirect(url)
    archived = request.GET.get("archived") == "1"
    sidebar = Paginator(
        Conversation.objects.for_user(request.user)
        .filter(archived=archived)
        .order_by("-pinned", "-updated")
        .only("id", "title", "updated", "pinned")
        .with_generating(),
        settings.CONFAB_CONVERSATIONS_PER_PAGE,
    ).get_page(request.GET.get("page"))
    _mark_days(sidebar)
    models = list(LanguageModel.objects.available_to(request.user))
    preferred = conversation.model if conversation else _preferences(request.user).model
    selected = preferred if preferred in models else None
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            # Not "messages": that name belongs to django.contrib.messages in templates.
            **_thread(conversation, request.GET.get("earlier")),
            "sidebar": sidebar,
            "archived": archived,
            "undo_delete": request.session.pop("undo_delete", None),
            "models": models,
            "selected_model": selected or (models[0] if models else None),
            "page_data": {
                "conversation": str(conversation.id) if conversation else None,
                "socket": "/ws/chat/",
                "conversationUrl": "/c/{id}/",
                "messageUrl": "/m/{id}/",
            },
            "ui_text": {
                "you": _("You"),
                "streaming": _("Generating…"),
                "newChat": _("New chat"),
                "reconnecting": _("Connection lost. Reconnecting…"),
                "signedOut": _("You are signed out. Reload the page to sign in."),
                "replyFinished": _("The reply is finished."),
                "today": _("Today"),
                "copy": _("Copy"),
                "edit": _("Edit"),
                "copied": _("Copied"),
                "reasoning": _("Reasoning"),
                "toolCall": _("Tool call: %s"),
                "delete": _("Delete"),
                "confirmDeleteMessage": _(
                    "Delete this message and everything after it on this branch?"
                ),
                "model": _("Model"),
                "promptTokens": _("Prompt tokens"),
                "completionTokens": _("Completion tokens"),
                "cachedTokens": _("Cached tokens"),
                "reasoningTokens": _("Reasoning tokens"),
                "totalTokens": _("Total tokens"),
                "cost": _("Cost"),
                "finishReason": _("Finish reason"),
            },
        },
    )


DAYS = {
    "pinned": _("Pinned"),
    "today": _("Today"),
    "yesterday": _("Yesterday"),
    "week": _("Previous 7 days"),
    "older": _("Earlier"),
}


def _thread(conversation, earlier):
    """The branch on show, its last CONFAB_MESSAGES_SHOWN messages unless asked for all."""
    if conversation is None:
        return {"thread": [], "hidden": 0}
    branch = conversation.branch()
    shown = len(branch) if earlier == "all" else settings.CONFAB_MESSAGES_SHOWN
    hidden = max(len(branch) - shown, 0)
    return {"thread": branch[hidden:], "hidden": hidden}


def _mark_days(conversations):
    """Give each conversation its day group; `new_day` marks the first of a group."""
    today = timezone.localdate()
    previous = None
    for conversation in conversations:
        age = (today - timezone.localdate(conversation.updated)).days
        day = "today" if age <= 0 else "yesterday" if age == 1 else "week" if age <= 7 else "older"
        if conversation.pinned:
            day = "pinned"
        conversation.day, conversation.day_label = day, DAYS[day]
        conversation.new_day = day != previous
        previous = day


@login_required
@require_GET
def export_json(request, conversation_id):
    conversation = _conversation_or_404(request, conversation_id)
    return JsonResponse(
        _export(conversation),
        json_dumps_params={"ensure_ascii": False, "indent": 2},
        headers={"Content-Disposition": f'attachment; filename="{_filename(conversation)}.json"'},
    )


@login_required
@require_GET
def export_markdown(request, conversation_id):
    conversation = _conversation_or_404(request, conversation_id)
    lines = [f"# {conversation}", ""]
    if conversation.system_prompt:
        lines += ["**System**", "", conversation.system_prompt, ""]
    for message in conversation.branch():
        heading = {"user": _("User"), "assistant": _("Assistant")}.get(message.role, message.role)
        if message.model_name:
            heading += f" ({message.model_name})"
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


@login_required
@require_GET
def search(request):
    """Titles and message text of the user's conversations; each hit links to its message."""
    query = " ".join(request.GET.get("q", "").split())[:200]
    hits = []
    if query:
        conversations = Conversation.objects.for_user(request.user)
        for conversation in conversations.filter(title__icontains=query)[:20]:
            hits.append({"conversation": conversation, "message": None, "snippet": ""})
        messages = Message.objects.filter(conversation__in=conversations).select_related(
            "conversation"
        )
        for message in _matching(messages, query)[:50]:
            hits.append(
                {
                    "conversation": message.conversation,
                    "message": message,
                    "snippet": _snippet(message.content, query),
                }
            )
    return render(request, "conversations/search.html", {"query": query, "hits": hits})


def _matching(messages, query):
    """PostgreSQL's full-text search where it can segment the words; a substring elsewhere
    (SQLite, and text without spaces between words, such as Chinese)."""
    if connection.vendor == "postgresql" and query.isascii():
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return (
            messages.annotate(found=SearchVector("content", config="simple"))
            .filter(found=SearchQuery(query, config="simple", search_type="websearch"))
            .order_by("-created")
        )
    return messages.filter(content__icontains=query).order_by("-created")


def _snippet(text, query, width=80):
    """The text around the first match, the match marked, everything else escaped."""
    start = text.lower().find(query.lower())
    if start < 0:
        return escape(text[: width * 2]) + ("…" if len(text) > width * 2 else "")
    before = max(0, start - width)
    end = start + len(query)
    return mark_safe(
        ("…" if before else "")
        + escape(text[before:start])
        + "<mark>"
        + escape(text[start:end])
        + "</mark>"
        + escape(text[end : end + width])
        + ("…" if end + width < len(text) else "")
    )


@login_required
@require_POST
def rename(request, conversation_id):
    conversation = _conversation_or_404(request, conversation_id)
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
    conversation = _conversation_or_404(request, conversation_id)
    setattr(conversation, flag, not getattr(conversation, flag))
    conversation.save(update_fields=[flag])
    _tell_other_tabs(conversation)
    return redirect("conversation", conversation.id)


@login_required
@require_POST
def delete(request, conversation_id):
    conversation = _conversation_or_404(request, conversation_id)
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
def conversation_settings(request, conversation_id):
    """The settings page, or with `?panel` only its forms, for the chat page's panel."""
    conversation = _conversation_or_404(request, conversation_id)
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
    conversation = _conversation_or_404(request, conversation_id)
    conversation.params = {}
    conversation.save(update_fields=["params"])
    flash.success(request, _("Request fields cleared: the model's defaults apply."))
    return redirect("conversation", conversation.id)


@login_required
def preferences(request):
    """My defaults for new conversations."""
    form = PreferencesForm(
        request.POST or None, instance=_preferences(request.user), user=request.user
    )
    if request.method == "POST" and form.is_valid():
        form.save()
        flash.success(request, _("Your defaults for new conversations are saved."))
        return redirect("preferences")
    return render(request, "conversations/preferences.html", {"form": form})


def _preferences(user):
    """The user's defaults; empty, and not yet saved, until they first save some."""
    saved = Preferences.objects.filter(user=user).select_related("model").first()
    return saved or Preferences(user=user)


@login_required
@require_GET
def my_usage(request):
    """What I used: this period against my quotas, per day and per model."""
    end = timezone.localdate()
    start = end - timedelta(days=29)
    records = UsageRecord.objects.filter(user=request.user, created__date__gte=start)
    return render(
        request,
        "conversations/usage.html",
        {
            "standings": quotas.standings(request.user),
            "totals": reports.totals(records),
            "chart": reports.daily_chart(records, "model", start, end),
            "by_model": reports.top(records, "model", limit=50),
            "start": start,
            "end": end,
        },
    )


def _message_or_404(request, message_id):
    return get_object_or_404(
        Message.objects.filter(
            conversation__in=Conversation.objects.for_user(request.user)
        ).select_related("conversation"),
        id=message_id,
    )


@login_required
@require_POST
def delete_message(request, message_id):
    """A message and everything that follows it on its branches; its siblings stay."""
    message = _message_or_404(request, message_id)
    conversation = message.conversation
    family = list(conversation.messages.only("id", "parent_id", "status", "role"))
    doomed = message.descendants(family)
    if any(m.status == Message.Status.STREAMING for m in doomed):
        flash.error(request, _("A reply there is still being generated: stop it first."))
        return redirect("conversation", conversation.id)
    # Show a neighbour: another version of the message, else what came before it.
    siblings = [m for m in family if m.parent_id == message.parent_id and m.role == message.role]
    neighbour = next((m for m in reversed(siblings) if m.id != message.id), None)
    with transaction.atomic():
        Message.objects.filter(id__in=[m.id for m in doomed]).delete()
        conversation.shown_id = neighbour.id if neighbour else message.parent_id
        conversation.save(update_fields=["shown"])
    flash.success(request, _("The message was deleted."))
    return redirect("conversation", conversation.id)


@login_required
@require_GET
def message_request(request, message_id):
    """What "View request" shows: the body sent upstream (never the key) and the usage."""
    reply = _message_or_404(request, message_id)
    body = sending.request_sent(reply)
    if body is None:
        return JsonResponse({"error": _("This reply's request was not kept.")}, status=404)
    return JsonResponse(
        {
            "request": body,
            "model": reply.model_name,
            "status": reply.status,
            "finish_reason": reply.finish_reason or None,
            "usage": reply.usage_dict(),
            "cost": reply.cost_display or None,
            "ttft_ms": reply.ttft_ms,
            "duration_ms": reply.duration_ms,
        },
        json_dumps_params={"ensure_ascii": False, "indent": 2},
    )


def _export(conversation):
    return {
        "conversation": conversation.to_dict(),
        "messages": [m.to_dict() for m in conversation.messages.order_by("created")],
    }


def _filename(conversation):
    return slugify(conversation.title)[:50] or f"conversation-{conversation.id}"


def signup(request):
    """The first account becomes the administrator; later ones need signup to be open."""
    first = not get_user_model().objects.exists()
    if not first and not SiteSettings.load().signup_open:
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = not get_user_model().objects.exists()
            user.save()
        login(request, user)
        if user.is_superuser:
            flash.success(request, _("Welcome! You are the administrator of this Confab."))
        return redirect("chat")
    return render(request, "registration/signup.html", {"form": form, "first": first})
