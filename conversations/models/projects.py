"""Projects: a group of conversations with shared instructions, files, and a default model
and parameters; shared with groups, whose members start their own (private) conversations
in it."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models.providers import LanguageModel


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user):
        """The only way to reach projects: those the user owns, and those shared with one
        of their groups."""
        if not user.is_authenticated:
            return self.none()
        shared = models.Q(groups__in=user.groups.all())
        return self.filter(models.Q(owner=user) | shared).distinct()

    def editable_by(self, user):
        """Those the user may change: their own, and those whose editors include one of
        their groups."""
        if not user.is_authenticated:
            return self.none()
        editor = models.Q(editors__in=user.groups.all())
        return self.filter(models.Q(owner=user) | editor).distinct()


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(_("name"), max_length=100)
    instructions = models.TextField(
        _("instructions"),
        blank=True,
        help_text=_("Added to every conversation in the project, before its own system prompt."),
    )
    model = models.ForeignKey(
        LanguageModel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("default model"),
    )
    params = models.JSONField(_("default parameters"), default=dict, blank=True)
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="projects",
        verbose_name=_("shared with"),
        help_text=_("Members of these groups may start conversations in the project."),
    )
    editors = models.ManyToManyField(
        Group,
        blank=True,
        related_name="edited_projects",
        verbose_name=_("may change it"),
        help_text=_("Members of these groups may also change its instructions and files."),
    )
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        verbose_name = _("project")
        verbose_name_plural = _("projects")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def to_dict(self):
        return {
            "id": str(self.id),
            "name": self.name,
            "instructions": self.instructions,
            "model": self.model.upstream_id if self.model else None,
            "params": self.params,
            "created": self.created.isoformat(),
        }
