"""What a user does to one message: see the request a reply was sent with, delete it."""

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from conversations.fanout import publish
from conversations.generation import sending
from conversations.models import Message


def _message_or_404(request, message_id):
    mine = Message.objects.for_user(request.user).select_related("conversation")
    return get_object_or_404(mine, id=message_id)


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
    # Every tab open on the conversation, in any process, drops them at once.
    async_to_sync(publish)(
        conversation.id,
        {
            "type": "message.deleted",
            "conversation": str(conversation.id),
            "messages": [str(m.id) for m in doomed],
            "shown": str(conversation.shown_id) if conversation.shown_id else None,
        },
    )
    flash.success(request, _("The message was deleted."))
    return redirect("conversation", conversation.id)


@login_required
@cache_control(private=True, no_store=True)
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
            # What went wrong in detail: the reply itself says it in plain words.
            "error": reply.error or None,
            "usage": reply.usage_dict(),
            "cost": reply.cost_display or None,
            "ttft_ms": reply.ttft_ms,
            "duration_ms": reply.duration_ms,
        },
        json_dumps_params={"ensure_ascii": False, "indent": 2},
    )
