"""What a gateway caller sends, checked by the chat's own rules (forms.params), and the form
a user makes a key with."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from conversations.forms.params import ParamsForm
from conversations.models import ApiKey, LanguageModel

ROLES = {"system", "developer", "user", "assistant", "tool"}
# A conversation sent in one request: at most this many messages.
MAX_MESSAGES = 2048


class Invalid(Exception):
    """A request the gateway refuses as OpenAI does: 400, naming the parameter."""

    def __init__(self, message, param=None):
        super().__init__(message)
        self.param = param


def _text_size(content):
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # typed parts: text, images by URL, …
        return sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    return 0


def clean_messages(messages):
    """The caller's `messages`: a list of objects with a known role and content a string, a
    list of parts, or null beside tool calls. Passed on as they are."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise Invalid(
            _("Must be a list of 1 to %(count)d messages.") % {"count": MAX_MESSAGES},
            "messages",
        )
    size = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise Invalid(
                _("Each message needs a role: %(roles)s.") % {"roles": ", ".join(sorted(ROLES))},
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise Invalid(_("Must be a string or a list of parts."), f"messages[{i}].content")
        if content is None and not message.get("tool_calls"):
            raise Invalid(_("Must be given unless the message has tool calls."),
                          f"messages[{i}].content")  # fmt: skip
        size += _text_size(content)
    # A conversation holds many messages: several times one message's limit.
    if size > settings.CONFAB_MAX_MESSAGE_CHARS * 10:
        raise Invalid(_("The messages are too long."), "messages")
    return messages


def clean_request(user, api_key, data):
    """(model, messages, params, stream, include_usage) of a chat completion request, or
    Invalid. Runs queries: call it in the database thread."""
    if not isinstance(data, dict):
        raise Invalid(_("The body must be a JSON object."))
    data = dict(data)
    name = data.pop("model", None)
    if not isinstance(name, str) or not name:
        raise Invalid(_("Name a model."), "model")
    model = find_model(user, api_key, name)
    if model is None:
        raise ModelNotFound(name)
    messages = clean_messages(data.pop("messages", None))
    stream = data.pop("stream", False)
    if not isinstance(stream, bool):
        raise Invalid(_("Must be true or false."), "stream")
    options = data.pop("stream_options", None) or {}
    if not isinstance(options, dict):
        raise Invalid(_("Must be an object."), "stream_options")
    data.pop("user", None)  # Confab sends its own pseudonym of the key's user
    if "max_completion_tokens" in data:  # the newer name of the same bound
        data["max_tokens"] = data.pop("max_completion_tokens")
    params = ParamsForm(data, model=model)
    if not params.is_valid():
        param, errors = next(iter(params.errors.items()))
        raise Invalid(" ".join(errors), None if param == "__all__" else param)
    return model, messages, params.params(), stream, options.get("include_usage") is True


class ModelNotFound(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


def available_models(user, api_key):
    """The models a key may use: its user's, narrowed to the key's allowlist if it has one."""
    models = LanguageModel.objects.available_to(user)
    allowed = list(api_key.allowed_models.values_list("pk", flat=True))
    return models.filter(pk__in=allowed) if allowed else models


def find_model(user, api_key, name):
    """The model a caller names: by its display name (an administrator's alias, which
    tells apart two providers' same id), else by the provider's model id."""
    models = available_models(user, api_key)
    return models.filter(display_name=name).first() or models.filter(upstream_id=name).first()


class ApiKeyForm(forms.ModelForm):
    """A new personal key: a name, and optionally an expiry, models and limits of its own."""

    expires_in_days = forms.IntegerField(
        label=_("Expires in (days)"),
        required=False,
        min_value=1,
        max_value=3650,
        help_text=_("Empty: never."),
    )

    class Meta:
        model = ApiKey
        fields = ["name", "allowed_models", "requests_per_minute", "max_concurrent"]
        widgets = {"allowed_models": forms.CheckboxSelectMultiple}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].queryset = LanguageModel.objects.available_to(user)
