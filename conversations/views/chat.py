"""The chat page (its sidebar, the branch on show) and search."""

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Preferences,
    Project,
    Provider,
    SiteSettings,
)
from conversations.rendering import add_turn_usage
from conversations.views.conversations import conversation_or_404

PLACEHOLDER = uuid.UUID(int=0)


def _uuid_or_none(value):
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def chat(request, conversation_id=None):
    conversation = conversation_or_404(request, conversation_id) if conversation_id else None
    # ?show=<message> (a search hit): this page shows the branch through that message, and
    # remembers nothing; choosing a branch to keep is a POST (show_branch).
    wanted = None
    if conversation and "show" in request.GET:
        wanted = conversation.messages.filter(id=_uuid_or_none(request.GET["show"])).first()
        if wanted is not None:
            conversation.shown = wanted  # for this page, never saved
    thread = _thread(conversation, request.GET.get("earlier"), wanted)
    if conversation and "thread" in request.GET:
        # The messages alone, for a tab that shows them again after a deletion in another
        # (chat.js): the page's notices and its undo are left for the page itself.
        models = LanguageModel.objects.available_to(request.user)
        context = {**thread, "conversation": conversation, "models": models.exists()}
        return render(request, "conversations/chat.html#thread", context)
    # A new chat started from a project's page (?project=) goes into that project.
    project = conversation.project if conversation else None
    if conversation is None and request.GET.get("project"):
        wanted_project = _uuid_or_none(request.GET["project"])
        project = Project.objects.for_user(request.user).filter(id=wanted_project).first()
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
    preferred = conversation.model_id if conversation else Preferences.of(request.user).model_id
    picker = offered(request.user, preferred)
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            # Not "messages": that name belongs to django.contrib.messages in templates.
            **thread,
            "sidebar": sidebar,
            "archived": archived,
            "undo_delete": request.session.pop("undo_delete", None),
            "picker": picker,
            # The header's controls for a conversation this page starts (chat.js).
            "placeholder": Conversation(id=PLACEHOLDER),
            # A share is of the branch on show: the one ?show chose is not the remembered one.
            "share_through": thread["thread"][-1].id if wanted else None,
            "projects": Project.objects.for_user(request.user).order_by("name"),
            "project": project,
            "page_data": {
                "conversation": str(conversation.id) if conversation else None,
                # A send continues the branch on show: the one ?show chose is not the
                # remembered one, so the page names its last message.
                "parent": str(thread["thread"][-1].id) if wanted else None,
                "socket": "/ws/chat/",
                "conversationUrl": "/c/{id}/",
                "messageUrl": "/m/{id}/",
                "uploadUrl": reverse("upload_file"),
                "project": str(project.id) if project else None,
                "modelsUrl": reverse("offered_models"),
                "placeholder": str(PLACEHOLDER),
            },
            "ui_text": {
                "you": _("You"),
                "streaming": _("Generating…"),
                "newChat": _("New chat"),
                "reconnecting": _("Connection lost. Reconnecting…"),
                "signedOut": _("You are signed out. Reload the page to sign in."),
                "sendQueued": _(
                    "Not connected: your message will be sent as soon as the connection is back."
                ),
                "notConnected": _("Not connected, so this did not happen. Try again in a moment."),
                "requestFailed": _(
                    "The request could not be loaded. Check your connection and try again."
                ),
                "copyFailed": _("Could not copy: the browser did not allow it."),
                "replyFinished": _("The reply is finished."),
                "toolFinished": _("The tool %s finished."),
                "toolWaits": _("The tool %s waits for your approval."),
                "send": _("Send"),
                "queue": _("Queue"),
                "queuedOne": _("Your message will be sent when the reply ends."),
                "queuedMany": _("%s messages will be sent, one after another, as the replies end."),
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
                "pin": _("Pin"),
                "unpin": _("Unpin"),
                "archive": _("Archive"),
                "unarchive": _("Unarchive"),
                "pinned": _("Pinned"),
                "finishReason": _("Finish reason"),
                "files": _("Files"),
                "oneSource": _("%s source"),
                "sources": _("%s sources"),
                "page": _("page %s"),
                **file_text(),
                "error": _("Error"),
                "askAnything": _("Ask anything. Your first message starts a new conversation."),
                "noModel": _(
                    "No model is available yet. An administrator must add a provider in the admin."
                ),
            },
        },
    )


def file_text():
    """What the pages' file uploads say (static/confab/uploads.js)."""
    return {
        "removeFile": _("Remove %s"),
        "fileReading": _("Reading %s…"),
        "fileReady": _("%s is ready."),
        "filesNotReady": _("Wait until your files are read, or remove them."),
        "uploadFailed": _("The upload failed. Check your connection and try again."),
    }


def offered(user, preferred=None):
    """The model picker of `user`'s pages: each model they may pick, as the picker shows it
    (a model being prepared cannot be picked yet), the one chosen, and a notice for each
    provider that cannot be reached. Rendered with the page, and again by GET /models/ when
    the page hears that the models on offer changed."""
    available = LanguageModel.objects.available_to(user)
    options = [_option(model) for model in available]
    ready = [option for option in options if not option["disabled"]]
    # `preferred`: a model's pk (the page's own choice), or its public id (the page's picker).
    wanted = [o for o in ready if preferred in (o["pk"], o["id"])]
    if not wanted:
        default = SiteSettings.default_among(
            available.exclude(provider__status=Provider.Status.PREPARING)
        )
        wanted = [o for o in ready if default is not None and o["pk"] == default.pk]
    chosen = wanted[0] if wanted else None
    unreachable = Provider.objects.filter(enabled=True, status=Provider.Status.UNREACHABLE)
    notices = [
        _(
            "Confab cannot reach the provider “%(provider)s”: %(reason)s. Its models fail "
            "until it is back; Confab keeps trying."
        )
        % {"provider": provider.name, "reason": provider.reason_text}
        for provider in unreachable
    ]
    return {
        "options": options,
        "selected": chosen["id"] if chosen else None,
        "notices": notices,
        "empty": not ready,
    }


def _option(model):
    label = str(model)
    state = model.provider.status
    if state == Provider.Status.PREPARING:
        label = _("%(model)s (preparing…)") % {"model": label}
    elif state == Provider.Status.UNREACHABLE:
        label = _("%(model)s (unreachable)") % {"model": label}
    return {
        "pk": model.pk,
        "id": str(model.public_id),
        "label": label,
        "disabled": state == Provider.Status.PREPARING,
        "bundled": model.provider.bundled,
    }


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def offered_models(request):
    """The picker again, for a page told that the models on offer changed."""
    chosen = request.GET.get("selected") or Preferences.of(request.user).model_id
    picker = offered(request.user, chosen)
    for option in picker["options"]:
        del option["pk"]
    return JsonResponse(picker)


# Lazy: built at import, translated when a page shows them, in that page's language.
DAYS = {
    "pinned": gettext_lazy("Pinned"),
    "today": gettext_lazy("Today"),
    "yesterday": gettext_lazy("Yesterday"),
    "week": gettext_lazy("Previous 7 days"),
    "older": gettext_lazy("Earlier"),
}


def _thread(conversation, earlier, wanted=None):
    """The branch on show, its last CONFAB_MESSAGES_SHOWN messages unless asked for all, or
    unless `wanted` (a message) is further back: it must be on the page."""
    if conversation is None:
        return {"thread": [], "hidden": 0}
    branch = conversation.branch()
    shown = len(branch) if earlier == "all" else settings.CONFAB_MESSAGES_SHOWN
    hidden = max(len(branch) - shown, 0)
    if wanted is not None and wanted in branch[:hidden]:
        hidden = 0
    add_turn_usage(branch)
    return {"thread": branch[hidden:], "hidden": hidden}


@login_required
@require_POST
def show_branch(request, message_id):
    """The `< 2 / 3 >` switcher: show the branch through this message, now and whenever the
    conversation opens again."""
    mine = Message.objects.for_user(request.user).select_related("conversation")
    message = get_object_or_404(mine, id=message_id)
    conversation = message.conversation
    conversation.shown = message
    conversation.save(update_fields=["shown"])
    url = reverse("conversation", args=[conversation.id])
    if message not in _thread(conversation, None)["thread"]:
        url += "?earlier=all"  # far back: it must be on the page
    return redirect(f"{url}#m-{message.id}")


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
@cache_control(private=True, no_store=True)
@require_GET
def search(request):
    """Titles and message text of the user's conversations; each hit links to its message."""
    query = " ".join(request.GET.get("q", "").split())[:200]
    hits = []
    # ?project=: only the user's conversations in that project.
    project = None
    if "project" in request.GET:
        projects = Project.objects.for_user(request.user)
        project = get_object_or_404(projects, id=_uuid_or_none(request.GET["project"]))
    if query:
        conversations = Conversation.objects.for_user(request.user)
        if project is not None:
            conversations = conversations.filter(project=project)
        for conversation in conversations.filter(title__icontains=query)[:20]:
            hits.append({"conversation": conversation, "message": None, "snippet": ""})
        messages = Message.objects.for_user(request.user).select_related("conversation")
        if project is not None:
            messages = messages.filter(conversation__project=project)
        for message in _matching(messages, query)[:50]:
            hits.append(
                {
                    "conversation": message.conversation,
                    "message": message,
                    "snippet": _snippet(message.content, query),
                }
            )
    context = {"query": query, "hits": hits, "project": project}
    return render(request, "conversations/search.html", context)


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
