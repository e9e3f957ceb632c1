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

    tool_steps = models.PositiveSmallIntegerField(
        _("tool steps per answer"),
        default=10,
        help_text=_("Model calls with tools before the model must answer with what it has."),
    )
    tool_timeout_s = models.PositiveSmallIntegerField(
        _("tool timeout (s)"), default=30, help_text=_("How long one tool call may run.")
    )
    tool_output_chars = models.PositiveIntegerField(
        _("tool output (characters)"),
        default=20_000,
        help_text=_("A longer result is cut there, with a note to the model."),
    )

    file_max_mb = models.PositiveIntegerField(
        _("largest file (MB)"),
        default=20,
        validators=[MinValueValidator(1)],
        help_text=_("A larger upload is refused, saying so."),
    )
    files_per_message = models.PositiveSmallIntegerField(
        _("files per message"),
        default=10,
        validators=[MinValueValidator(1)],
        help_text=_("At most this many files sent with one message."),
    )
    embedding_model = models.ForeignKey(
        "LanguageModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("embedding model"),
        help_text=_(
            "Its provider's /v1/embeddings ranks passages by meaning as well as by words. "
            "Empty: full-text search alone."
        ),
    )

    class Meta:
        verbose_name = verbose_name_plural = _("site settings")

    def __str__(self):
        return str(_("Site settings"))

    @classmethod
    def load(cls):
        return cls.objects.get_or_create(pk=1)[0]
