"""Tools a model may call on the server: the built-in ones, and MCP tool servers an
administrator registers. Each tool is auto (runs at once), ask (waits for the user's
approval) or off."""

import json
import re
import uuid

from django.contrib.auth.models import Group
from django.db import models
from django.utils.translation import gettext_lazy as _

from conversations.fields import EncryptedTextField, json_object_field

# What a model may call a function (OpenAI's rule).
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Approval(models.TextChoices):
    AUTO = "auto", _("auto: runs at once")
    ASK = "ask", _("ask: waits for the user's approval")
    OFF = "off", _("off: never runs")


class BuiltinTool(models.Model):
    """One of Confab's own tools, as an administrator set it up."""

    class Name(models.TextChoices):
        CALCULATOR = "calculator", _("calculator")
        CLOCK = "current_time", _("current date and time")
        SEARCH = "search_conversations", _("search in the user's conversations")
        FETCH = "fetch_url", _("fetch a web page")

    name = models.CharField(_("tool"), max_length=32, choices=Name.choices, unique=True)
    # Off until an administrator turns it on: a tool offered to every model changes every
    # request, and some providers refuse `tools` for models that take none.
    enabled = models.BooleanField(_("enabled"), default=False)
    approval = models.CharField(
        _("approval"), max_length=8, choices=Approval.choices, default=Approval.AUTO
    )
    allowed_hosts = models.TextField(
        _("allowed hosts"),
        blank=True,
        help_text=_(
            "For fetching web pages: the host names it may fetch, one per line (a subdomain "
            "of one listed is allowed too). Addresses inside your network never are."
        ),
    )

    class Meta:
        verbose_name = _("built-in tool")
        verbose_name_plural = _("built-in tools")
        ordering = ["name"]

    def __str__(self):
        return self.get_name_display()

    @classmethod
    def load(cls):
        """Every built-in tool, made (off) on first use."""
        known = {tool.name: tool for tool in cls.objects.all()}
        for name in cls.Name.values:
            if name not in known:
                known[name], _ = cls.objects.get_or_create(name=name)
        return [known[name] for name in cls.Name.values]

    @property
    def hosts(self):
        return [h.strip().lower() for h in self.allowed_hosts.splitlines() if h.strip()]


class ToolServerQuerySet(models.QuerySet):
    def available_to(self, user):
        """Enabled servers open to everyone, or to one of the user's groups."""
        open_to_all = models.Q(groups__isnull=True)
        mine = models.Q(groups__user=user)
        return self.filter(enabled=True).filter(open_to_all | mine).distinct()


class ToolServer(models.Model):
    """An MCP server (streamable HTTP) whose tools models may call."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(
        _("name"),
        max_length=40,
        unique=True,
        help_text=_("Letters, digits, _ and -: the prefix of its tools' names."),
    )
    url = models.CharField(_("URL"), max_length=300, help_text=_("Its streamable HTTP endpoint."))
    # A JSON object of header names to values: they may hold tokens.
    secret_headers = EncryptedTextField(_("headers"), blank=True)
    approval = models.CharField(
        _("approval"), max_length=8, choices=Approval.choices, default=Approval.AUTO
    )
    tool_approvals = json_object_field(
        _("approval per tool"),
        _('Overrides for some of its tools, e.g. {"delete_file": "ask"}.'),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    groups = models.ManyToManyField(
        Group,
        blank=True,
        verbose_name=_("groups"),
        help_text=_("Only members of these groups get its tools. None: everyone."),
    )
    tools = models.JSONField(_("tools"), default=list, blank=True, editable=False)
    refreshed = models.DateTimeField(_("tools listed"), null=True, blank=True, editable=False)
    error = models.TextField(_("last error"), blank=True, editable=False)

    objects = ToolServerQuerySet.as_manager()

    class Meta:
        verbose_name = _("tool server")
        verbose_name_plural = _("tool servers")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def headers(self):
        return json.loads(self.secret_headers) if self.secret_headers else {}

    @headers.setter
    def headers(self, value):
        self.secret_headers = json.dumps(value) if value else ""

    def approval_of(self, tool):
        return self.tool_approvals.get(tool, self.approval)
