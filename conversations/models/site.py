"""Settings an administrator changes at run time, kept in the database."""

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
