"""Settings an administrator changes at run time, kept in the database."""

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class SiteSettings(models.Model):
    """One row of settings an administrator changes at run time."""

    signup_open = models.BooleanField(
        _("anyone may sign up"),
        default=False,
        help_text=_("When off, only an administrator can create accounts."),
    )
    title_model = models.ForeignKey(
        "LanguageModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("model for titles"),
        help_text=_("Writes each new conversation's title. Empty: the conversation's own model."),
    )
    invitation_days = models.PositiveSmallIntegerField(
        _("invitations expire after (days)"),
        default=7,
        validators=[MinValueValidator(1)],
        help_text=_("An invitation's link works once, and only this many days."),
    )
    admins_may_read_conversations = models.BooleanField(
        _("administrators may read conversations"),
        default=False,
        help_text=_(
            "When off, admin shows conversations' owner, model, size, dates and usage, never "
            "their text. When on, each time an administrator opens a conversation's text, "
            "a record is kept (Conversation readings, for superusers)."
        ),
    )

    class Meta:
        verbose_name = verbose_name_plural = _("site settings")

    def __str__(self):
        return str(_("Site settings"))

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]
