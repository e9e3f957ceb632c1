from axes.apps import AppConfig as AxesAppConfig
from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Confab"
    default = True
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from conversations import sessions

        sessions.connect_signals()


class SignInLockoutsConfig(AxesAppConfig):
    """django-axes under a name its admin section shows in the reader's language (the
    package names itself "Axes", and ships no Chinese)."""

    verbose_name = _("sign-in lockouts")
