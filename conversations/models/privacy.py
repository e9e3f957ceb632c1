"""Conversations are private from administrators: when the site allows an administrator
to read one, each reading is recorded here, for superusers to see."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ConversationReading(models.Model):
    """An administrator opened the text of someone's conversation. The names are copied,
    so that the record outlives the accounts and the conversation."""

    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("administrator"),
    )
    reader_name = models.CharField(_("administrator"), max_length=150)
    conversation = models.ForeignKey(
        "Conversation",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("conversation"),
    )
    conversation_ref = models.UUIDField(_("conversation id"))
    owner_name = models.CharField(_("owner"), max_length=150)
    created = models.DateTimeField(_("read at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("conversation reading")
        verbose_name_plural = _("conversation readings")
        ordering = ["-created"]

    def __str__(self):
        return f"{self.reader_name} → {self.owner_name} ({self.created:%Y-%m-%d %H:%M})"

    @classmethod
    def record(cls, reader, conversation):
        return cls.objects.create(
            reader=reader,
            reader_name=reader.get_username(),
            conversation=conversation,
            conversation_ref=conversation.id,
            owner_name=conversation.owner.get_username(),
        )
