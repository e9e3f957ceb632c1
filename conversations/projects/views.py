"""Projects: making one, its page (its conversations and files, its settings for those who
may change it), deleting it, and moving a conversation into or out of one. Another user gets
404 for every project URL; a member who may not change the project, 403 when trying."""

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from conversations.models import Conversation, Project
from conversations.projects.forms import MoveForm, ProjectForm
from conversations.views.chat import file_text
from conversations.views.conversations import _tell_other_tabs, conversation_or_404


def project_or_404(request, project_id):
    return get_object_or_404(Project.objects.for_user(request.user), id=project_id)


def editable_or_403(request, project_id):
    project = project_or_404(request, project_id)
    if not Project.objects.editable_by(request.user).filter(id=project.id).exists():
        raise PermissionDenied
    return project


@login_required
@cache_control(private=True, no_store=True)
def new_project(request):
    form = ProjectForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.instance.owner = request.user
        project = form.save()
        flash.success(request, _("Project “%(name)s” created.") % {"name": project})
        return redirect("project", project.id)
    return render(request, "conversations/projects/new.html", {"form": form})


@login_required
@cache_control(private=True, no_store=True)
def project(request, project_id):
    """The project's page: the user's own conversations in it, its files and instructions,
    and its settings for those who may change it (a POST saves them)."""
    project = project_or_404(request, project_id)
    editable = Project.objects.editable_by(request.user).filter(id=project.id).exists()
    form = ProjectForm(request.POST or None, instance=project, user=request.user)
    if request.method == "POST":
        if not editable:
            raise PermissionDenied
        if form.is_valid():
            project = form.save(commit=False)
            project.updated = timezone.now()
            project.save()
            form.save_m2m()
            flash.success(request, _("Project saved."))
            return redirect("project", project.id)
    conversations = Conversation.objects.for_user(request.user).filter(project=project)
    context = {
        "project": project,
        "form": form if editable else None,
        "editable": editable,
        "owner": project.owner_id == request.user.pk,
        "conversations": conversations.order_by("-updated")[:100],
        "files": project.files.order_by("created"),
        "page_data": {
            "socket": "/ws/chat/",
            "uploadUrl": reverse("upload_file"),
            "project": str(project.id),
            "text": file_text(),
        },
    }
    return render(request, "conversations/projects/project.html", context)


@login_required
@require_POST
def delete_project(request, project_id):
    """Its owner deletes it, and its files; the conversations in it stay, out of it."""
    project = project_or_404(request, project_id)
    if project.owner_id != request.user.pk:
        raise PermissionDenied
    project.delete()
    flash.success(request, _("Project “%(name)s” deleted.") % {"name": project})
    return redirect("chat")


@login_required
@require_POST
def move(request, conversation_id):
    """A conversation into one of the user's projects, or out of it (`project` empty)."""
    conversation = conversation_or_404(request, conversation_id)
    form = MoveForm(request.POST, user=request.user)
    if not form.is_valid():
        flash.error(request, " ".join(form.errors.get("project", [])))
        return redirect("conversation", conversation.id)
    conversation.project = form.cleaned_data["project"]
    conversation.save(update_fields=["project"])
    _tell_other_tabs(conversation)
    return redirect("conversation", conversation.id)
