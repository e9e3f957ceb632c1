"""Every input is validated here: websocket events and HTTP forms alike."""

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from conversations.models import LanguageModel


class JSONObjectField(forms.Field):
    """A field already decoded from JSON that must be an object."""

    def to_python(self, value):
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(_("Must be a JSON object."), code="invalid")
        return value


class StrictCharField(forms.CharField):
    """A CharField that refuses numbers, lists and objects instead of stringifying them."""

    def to_python(self, value):
        if value is not None and not isinstance(value, str):
            raise forms.ValidationError(_("Must be a string."), code="invalid")
        return super().to_python(value)


class ParamsForm(forms.Form):
    """Request fields a user may set on a conversation or a single send.

    Ranges follow the Chat Completions API (DESIGN.md §1).
    """

    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    top_p = forms.FloatField(required=False, min_value=0, max_value=1)
    max_tokens = forms.IntegerField(required=False, min_value=1)
    presence_penalty = forms.FloatField(required=False, min_value=-2, max_value=2)
    frequency_penalty = forms.FloatField(required=False, min_value=-2, max_value=2)
    seed = forms.IntegerField(required=False)

    def __init__(self, data, *, model=None):
        if not isinstance(data, dict):
            data = {"__all__": data}
        super().__init__(data)
        self.model = model

    def clean(self):
        unknown = set(self.data) - set(self.fields)
        if unknown:
            raise forms.ValidationError(
                _("Unknown parameter: %(names)s.") % {"names": ", ".join(sorted(map(str, unknown)))}
            )
        cleaned = super().clean()
        limit = self.model.max_output_tokens if self.model else None
        if limit and (cleaned.get("max_tokens") or 0) > limit:
            self.add_error(
                "max_tokens",
                _("Ensure this value is less than or equal to %(limit)s.") % {"limit": limit},
            )
        return cleaned

    def params(self):
        return {k: v for k, v in self.cleaned_data.items() if v is not None}


class SubscribeForm(forms.Form):
    conversation = forms.UUIDField()


class SendForm(forms.Form):
    conversation = forms.UUIDField(required=False)
    content = StrictCharField(max_length=settings.CONFAB_MAX_MESSAGE_CHARS, strip=False)
    parent = forms.UUIDField(required=False)
    model = forms.UUIDField(required=False)
    params = JSONObjectField(required=False)
    client_id = forms.UUIDField(required=False)

    def clean_content(self):
        content = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError(_("The message is empty."), code="required")
        return content

    def clean(self):
        cleaned = super().clean()
        model_id = cleaned.get("model")
        if model_id is not None:
            cleaned["model"] = LanguageModel.objects.available().filter(public_id=model_id).first()
            if cleaned["model"] is None:
                self.add_error("model", _("This model is not available."))
        params = ParamsForm(cleaned.get("params") or {}, model=cleaned.get("model"))
        if not params.is_valid():
            for name, errors in params.errors.items():
                label = "params" if name == "__all__" else f"params.{name}"
                for error in errors:
                    self.add_error(None, f"{label}: {error}")
        else:
            cleaned["params"] = params.params()
        return cleaned


class StopForm(forms.Form):
    message = forms.UUIDField()


EVENT_FORMS = {"subscribe": SubscribeForm, "send": SendForm, "stop": StopForm}


def error_text(form):
    """One readable sentence from a form's errors, naming the fields."""
    parts = []
    for name, errors in form.errors.items():
        text = " ".join(str(e) for e in errors)
        parts.append(text if name == "__all__" else f"{name}: {text}")
    return " ".join(parts)


class SignupForm(UserCreationForm):
    pass
