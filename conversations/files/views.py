"""The files contract (docs/protocol.md, Files): POST /files/ uploads, GET /files/<id>/
answers how it stands, POST /files/<id>/delete/ removes one. Another user gets 404.

The upload is an async view: the multipart body is parsed and the bytes stored in a thread,
the row written in one database hop, and the text made ready in the background
(conversations.files.processing). Its answer comes at once, `status: processing`; the tabs
hear of its progress through the socket (`file.updated`).
"""

import asyncio

from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from conversations.fanout import publish_to_user
from conversations.files import processing
from conversations.files.forms import UploadForm
from conversations.models import File, Project


def file_or_404(user, file_id):
    return get_object_or_404(File.objects.for_user(user), id=file_id)


@require_POST
async def upload(request):
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "Sign in first.", "code": "signed_out"}, status=401)
    files = await asyncio.to_thread(lambda: request.FILES)  # parsed off the event loop
    form = UploadForm(request.POST, files, user=user)
    if not await database_sync_to_async(form.is_valid)():
        return JsonResponse({"error": form.error_text(), "code": form.code}, status=400)
    upload = form.cleaned_data["file"]
    file = File(
        owner=user,
        project=form.cleaned_data["project"],
        name=upload.name[:200],
        kind=form.kind,
        size=upload.size,
    )
    name = file.blob.field.generate_filename(file, upload.name)
    file.blob.name = await asyncio.to_thread(default_storage.save, name, upload)
    await database_sync_to_async(file.save)()
    processing.start(file.id)
    payload = file.to_dict()
    await publish_to_user(user.pk, {"type": "file.updated", "file": payload})
    return JsonResponse(payload, status=201)


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def detail(request, file_id):
    return JsonResponse(file_or_404(request.user, file_id).to_dict())


@login_required
@require_POST
def delete(request, file_id):
    """The uploader's own file, or a project's file by someone who may change the project."""
    file = file_or_404(request.user, file_id)
    editable = Project.objects.editable_by(request.user).filter(id=file.project_id).exists()
    if file.owner_id != request.user.pk and not editable:
        raise Http404
    file.delete()
    return JsonResponse({"deleted": str(file_id)})
