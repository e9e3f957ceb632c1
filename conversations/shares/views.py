"""Sharing a conversation, the shared page, continuing it, and the owner's list of links.

The shared page reads the snapshot through its share and nothing else: a reader, signed in
or not, never reaches the conversation it was taken from. Every answer is
`Cache-Control: private, no-store`, so that a revoked link stops working at once, for every
reader, and no cache keeps a copy.
"""

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from conversations.models import Share
from conversations.shares.forms import ShareForm
from conversations.views.conversations import conversation_or_404


@login_required
@cache_control(private=True, no_store=True)
def share_conversation(request, conversation_id):
    """The choices (who may read it, what it shows, when it ends); a POST makes the link
    and answers with it: a redirect to `/s/<token>/`."""
    conversation = conversation_or_404(request, conversation_id)
    form = ShareForm(request.POST or None, initial={"through": request.GET.get("through")})
    if request.method == "POST" and form.is_valid():
        share = form.take(conversation)
        flash.success(request, _("Your link is ready. Copy it and send it to whom you like."))
        return redirect("share", share.token)
    links = Share.objects.for_user(request.user).filter(conversation=conversation)
    return render(
        request,
        "conversations/shares/new.html",
        {"conversation": conversation, "form": form, "links": _with_urls(request, links)},
    )


def _live_share_or_404(token):
    return get_object_or_404(Share.objects.live().select_related("owner"), token=token)


@cache_control(private=True, no_store=True)
@require_GET
def shared(request, token):
    """The snapshot, for its audience: the people of this Confab unless the owner chose
    anyone with the link. Not for search engines, and no preview beyond a plain title."""
    share = _live_share_or_404(token)
    if share.audience == Share.Audience.MEMBERS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    response = render(
        request,
        "conversations/shares/shared.html",
        {
            "share": share,
            "thread": share.shown_messages(),
            "is_owner": request.user == share.owner,
            "link": request.build_absolute_uri(),
        },
    )
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_POST
def continue_share(request, token):
    """A copy of the snapshot as a new conversation of the reader's, to go on with."""
    share = _live_share_or_404(token)
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("share", args=[token]))
    conversation = share.copy_for(request.user)
    flash.success(request, _("This is your own copy of the shared conversation."))
    return redirect("conversation", conversation.id)


@login_required
@require_POST
def revoke_share(request, token):
    """The owner takes a link down: from then on it answers 404."""
    share = get_object_or_404(Share.objects.for_user(request.user), token=token)
    if share.revoked is None:
        share.revoked = timezone.now()
        share.save(update_fields=["revoked"])
    flash.success(request, _("The link to “%(title)s” is revoked.") % {"title": share})
    return redirect("shares")


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def shares(request):
    """Every link the user made, live or not, with a way to revoke each live one."""
    links = Share.objects.for_user(request.user).select_related("conversation")
    return render(request, "conversations/shares/list.html", {"links": _with_urls(request, links)})


def _with_urls(request, links):
    links = list(links)
    for link in links:
        link.url = request.build_absolute_uri(reverse("share", args=[link.token]))
    return links
