"""Personal API keys: how a member's own scripts and tools reach the team gateway (/v1)."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models.providers import LanguageModel

KEY_PREFIX = "ck-"
# How much of a key is kept in the clear, to recognise it in lists: "ck-" and six more.
SHOWN_CHARS = 9


def digest(key):
    """What is stored of a key. A key is 240 random bits: a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        """Keys that may be used now: not revoked, not expired, of an active user."""
        now = timezone.now()
        return self.filter(revoked__isnull=True, user__is_active=True).filter(
            models.Q(expires__isnull=True) | models.Q(expires__gt=now)
        )

    def by_key(self, key):
        """The usable key whose digest this is, or None."""
        if not key.startswith(KEY_PREFIX):
            return None
        return self.usable().select_related("user").filter(digest=digest(key)).first()


class ApiKey(models.Model):
    """A user's named personal key. Only its digest and a short prefix are kept: the key
    itself is shown once, when it is made (ApiKey.create)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys",
        verbose_name=_("user"),
    )  # fmt: skip
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("starts with"), max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires = models.DateTimeField(_("expires"), null=True, blank=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked = models.DateTimeField(_("revoked"), null=True, blank=True)
    allowed_models = models.ManyToManyField(
        LanguageModel,
        blank=True,
        related_name="+",
        verbose_name=_("models"),
        help_text=_("Only these models. None: every model its user may use."),
    )
    requests_per_minute = models.PositiveIntegerField(
        _("requests per minute"), null=True, blank=True, help_text=_("Empty: the user's limit.")
    )
    max_concurrent = models.PositiveSmallIntegerField(
        _("replies at once"), null=True, blank=True, help_text=_("Empty: the user's limit.")
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def create(cls, user, name, **fields):
        """A new key and its one showing: (ApiKey, the key)."""
        key = KEY_PREFIX + secrets.token_urlsafe(30)
        api_key = cls.objects.create(
            user=user, name=name, prefix=key[:SHOWN_CHARS], digest=digest(key), **fields
        )
        return api_key, key

    @property
    def is_active(self):
        expired = self.expires is not None and self.expires <= timezone.now()
        return self.revoked is None and not expired
