"""The websocket's client events (DESIGN.md §4), each validated by a form of its own."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from conversations.forms.params import ParamsForm
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


class UUIDListField(forms.Field):
    """A list of at most `max_items` UUIDs."""

    def __init__(self, *, max_items, message=None, **kwargs):
        super().__init__(**kwargs)
        self.max_items = max_items
        self.message = message or _("Must be a list of up to %(count)d message ids.")

    def to_python(self, value):
        if value in (None, []):
            return []
        if not isinstance(value, list) or len(value) > self.max_items:
            raise forms.ValidationError(self.message % {"count": self.max_items})
        return [forms.UUIDField().clean(item) for item in value]


class EventForm(forms.Form):
    """A websocket event from a signed-in user."""

    def __init__(self, data, *, user):
        super().__init__(data)
        self.user = user


class SubscribeForm(EventForm):
    conversation = forms.UUIDField()
    # The replies the client shows as streaming; those that ended meanwhile are sent again.
    # At most 32: a user's replies at once (3 by default) of up to 8 choices each fit, and
    # no more, since each id can cost a rendered message.done.
    streaming = UUIDListField(required=False, max_items=32)


class MessageField(StrictCharField):
    """What a user writes: a string, not only whitespace, at most CONFAB_MAX_MESSAGE_CHARS."""

    def __init__(self, **kwargs):
        super().__init__(max_length=settings.CONFAB_MAX_MESSAGE_CHARS, strip=False, **kwargs)

    def validate(self, value):
        super().validate(value)
        if not value.strip():
            raise forms.ValidationError(_("The message is empty."), code="required")


class ModelChoiceMixin:
    """`model`, a model's public id, becomes the model, if the user may use it."""

    def clean_model(self):
        public_id = self.cleaned_data["model"]
        if public_id is None:
            return None
        model = LanguageModel.objects.available_to(self.user).filter(public_id=public_id).first()
        if model is None:
            raise forms.ValidationError(_("This model is not available."))
        return model


class SendForm(ModelChoiceMixin, EventForm):
    conversation = forms.UUIDField(required=False)
    content = MessageField()
    parent = forms.UUIDField(required=False)
    model = forms.UUIDField(required=False)
    params = JSONObjectField(required=False)
    client_id = forms.UUIDField(required=False)
    # Files uploaded beforehand (POST /files/); the site's own cap is checked on sending.
    files = UUIDListField(
        required=False, max_items=100, message=_("Must be a list of up to %(count)d file ids.")
    )
    # A new conversation's project (ignored for an existing conversation).
    project = forms.UUIDField(required=False)

    def clean(self):
        cleaned = super().clean()
        params = ParamsForm(cleaned.get("params") or {}, model=cleaned.get("model"))
        if params.is_valid():
            cleaned["params"] = params.params()
        else:
            self.add_error(None, params.error_text())
        return cleaned


class EditForm(EventForm):
    message = forms.UUIDField()
    content = MessageField()
    client_id = forms.UUIDField(required=False)


class RegenerateForm(ModelChoiceMixin, EventForm):
    message = forms.UUIDField()
    model = forms.UUIDField(required=False)
    params = JSONObjectField(required=False)


class StopForm(EventForm):
    message = forms.UUIDField()


class ApproveForm(EventForm):
    """The user's answer to a tool call waiting for approval."""

    message = forms.UUIDField()
    allow = forms.BooleanField(required=False)
    # Let this tool run without asking for the rest of the conversation.
    always = forms.BooleanField(required=False)

    def clean_allow(self):
        if not isinstance(self.data.get("allow"), bool):
            raise forms.ValidationError(_("Must be true or false."))
        return self.data["allow"]


EVENT_FORMS = {
    "subscribe": SubscribeForm,
    "send": SendForm,
    "regenerate": RegenerateForm,
    "edit": EditForm,
    "stop": StopForm,
    "approve": ApproveForm,
}
