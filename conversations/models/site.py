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
    default_model = models.ForeignKey(
        "LanguageModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("default model"),
        help_text=_(
            "Chosen for everyone who has not picked a model of their own. Adding or enabling "
            "a model never changes it. Empty: the first model Confab found, set once."
        ),
    )
    titles = models.BooleanField(
        _("write titles"),
        default=True,
        help_text=_(
            "After a conversation's first reply, a model writes it a short title. Off: "
            "conversations keep their first message as their title."
        ),
    )
    title_model = models.ForeignKey(
        "LanguageModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("model for titles"),
        help_text=_(
            "Writes each new conversation's title. Empty: the conversation's own model. The "
            "bundled local demo model never writes titles."
        ),
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

    @classmethod
    def default_among(cls, available):
        """The model preselected among `available` (a queryset of what a user may use):
        the site's default. Never set yet, it is set now, once, to the earliest model added
        that is available, so that a model added later, sorting first, is never chosen by
        accident. A user who may not use the default gets their earliest-added one."""
        default_id = cls.objects.filter(pk=1).values_list("default_model", flat=True).first()
        if default_id is None:
            first = available.model.objects.available().order_by("pk").first()
            if first is None:
                return None
            cls.load()
            cls.objects.filter(pk=1, default_model__isnull=True).update(default_model=first)
            default_id = cls.objects.values_list("default_model", flat=True).get(pk=1)
        chosen = available.filter(pk=default_id).first()
        return chosen or available.order_by("pk").first()
