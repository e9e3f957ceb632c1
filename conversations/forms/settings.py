"""The settings forms: each request field an input of its own, for people. They put the
inputs together into `params` and leave the judging to ParamsForm, the one set of rules."""

import copy
import json
import re
from itertools import zip_longest

from django import forms
from django.forms.renderers import TemplatesSetting
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from conversations.forms.params import ParamsForm, ToolsField
from conversations.models import Conversation, LanguageModel, Preferences


def _request_field(name, label, what, *, ranged=True):
    """ParamsForm's own field for `name` (its range, its messages), labelled for people,
    its range shown in the help text and, through min and max, to the browser."""
    field = copy.deepcopy(ParamsForm.base_fields[name])
    field.label, field.help_text = label, what
    if ranged:
        low, high = field.min_value, field.max_value
        field.help_text = format_lazy(_("{low} to {high}. {what}"), low=low, high=high, what=what)
    field.widget.attrs.setdefault("step", "1" if isinstance(field, forms.IntegerField) else "any")
    return field


# Stop sequences are written one a line, so a new line or a tab inside one is escaped.
ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def _unescape(line):
    return re.sub(r"\\([nt\\])", lambda match: ESCAPES[match[1]], line)


def _escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _stop_lines(stop):
    """`stop` (a string or a list of them) as StopLinesField shows it."""
    return "\n".join(map(_escape, [stop] if isinstance(stop, str) else stop or []))


class StopLinesField(forms.CharField):
    """Stop sequences, one a line: a list, or None when there are none."""

    def __init__(self, **kwargs):
        super().__init__(strip=False, widget=forms.Textarea(attrs={"rows": 3}), **kwargs)

    def to_python(self, value):
        lines = super().to_python(value).splitlines()
        return [_unescape(line) for line in lines if line.strip()] or None


BAD_JSON = _("This is not valid JSON: %(error)s.")


class JSONTextField(forms.CharField):
    """JSON written in a textarea, decoded; what it must be is ParamsForm's to say.

    `checks` names the rules static/confab/settings.js applies as the user types (the same
    as ParamsForm's, with its messages, carried by data attributes), so that a mistake
    shows beside the field before anything is saved; the server checks again on save.
    """

    def __init__(self, *, checks, messages, **kwargs):
        attrs = {"rows": 6, "spellcheck": "false", "class": "code", "data-json": checks,
                 "data-bad-json": BAD_JSON, **messages}  # fmt: skip
        super().__init__(widget=forms.Textarea(attrs=attrs), **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError as error:
            raise forms.ValidationError(BAD_JSON, params={"error": error}) from None


def _json_text(value):
    return json.dumps(value, indent=2, ensure_ascii=False) if value else ""


class BiasRowsWidget(forms.Widget):
    """Rows of a token id and a bias, posted as repeated `<name>_token` and `<name>_bias`.

    One empty row more than there are biases, so that a row can be added without
    JavaScript; static/confab/settings.js adds and removes rows with it.
    """

    template_name = "conversations/widgets/bias_rows.html"
    use_fieldset = True

    def value_from_datadict(self, data, files, name):
        def getlist(key):  # a QueryDict from a request, or a plain dict
            values = data.getlist(key) if hasattr(data, "getlist") else data.get(key, [])
            return [values] if isinstance(values, str) else values

        return list(zip_longest(getlist(f"{name}_token"), getlist(f"{name}_bias"), fillvalue=""))

    def value_omitted_from_data(self, data, files, name):
        return False

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rows = value.items() if isinstance(value, dict) else value or []
        filled = [(token, bias) for token, bias in rows if f"{token}{bias}".strip()]
        context["rows"] = [*filled, ("", "")]
        return context

    def render(self, name, value, attrs=None, renderer=None):
        # The form renderer only looks in Django's and the apps' templates; this one lives
        # with the project's.
        return super().render(name, value, attrs, renderer=TemplatesSetting())


class BiasRowsField(forms.Field):
    """`logit_bias` from its rows: {token id: bias}, or None when every row is empty."""

    widget = BiasRowsWidget

    def to_python(self, value):
        biases = {}
        for token, bias in value or ():
            token, bias = str(token).strip(), str(bias).strip()
            if not token and not bias:
                continue
            if not token or not bias:
                raise forms.ValidationError(_("Each row needs a token id and a bias."))
            try:
                number = float(bias)
            except ValueError:
                raise forms.ValidationError(_("A bias must be a number.")) from None
            biases[token] = int(number) if number.is_integer() else number
        return biases or None


class RequestFieldsForm(forms.ModelForm):
    """A model, a system prompt and every request field of DESIGN.md §1, an input each.

    An empty input is a field not set: the model's default applies (shown as the input's
    placeholder when the administrator set one). The inputs become a `params` dict that
    ParamsForm judges against the chosen model; its errors come back next to their input.
    """

    model = forms.ModelChoiceField(
        LanguageModel.objects.none(),
        to_field_name="public_id",  # integer primary keys never leave the server
        required=False,
        label=_("Model"),
        empty_label=_("The first available"),
        error_messages={"invalid_choice": _("This model is not available.")},
    )
    temperature = _request_field(
        "temperature", _("Temperature"), _("Higher is more varied, lower more focused.")
    )
    top_p = _request_field(
        "top_p",
        _("Top p"),
        _("Only the most likely tokens that add up to this probability are considered."),
    )
    seed = _request_field(
        "seed",
        _("Seed"),
        _("A whole number. With the same seed and settings, providers that support it try "
          "to give the same reply."),
        ranged=False,
    )  # fmt: skip
    max_tokens = _request_field(
        "max_tokens", _("Max tokens"), _("The longest reply, in tokens: at least 1."), ranged=False
    )
    n = _request_field("n", _("Choices (n)"), _("Replies to each message, shown as versions."))
    stop = StopLinesField(
        label=_("Stop sequences"),
        required=False,
        help_text=_(
            r"Up to 4, one a line: the reply ends before any of them. Write \n for a new "
            r"line and \t for a tab."
        ),
    )
    presence_penalty = _request_field(
        "presence_penalty", _("Presence penalty"), _("Positive values favour new topics.")
    )
    frequency_penalty = _request_field(
        "frequency_penalty",
        _("Frequency penalty"),
        _("Positive values make repeating the same words less likely."),
    )
    logit_bias = BiasRowsField(
        label=_("Logit bias"),
        required=False,
        help_text=_(
            "Make tokens more or less likely: a token id (a whole number from the model's "
            "tokenizer) and a bias from -100 (never) to 100 (always). An empty row is left out."
        ),
    )
    response_format = forms.ChoiceField(
        label=_("Response format"),
        required=False,
        choices=[
            ("", _("The model's default")),
            ("text", _("Text")),
            ("json_object", _("JSON mode: any JSON object")),
            ("json_schema", _("JSON schema: JSON that follows a schema")),
        ],
    )
    schema_name = forms.CharField(
        label=_("Schema name"),
        required=False,
        max_length=64,
        help_text=_("For a JSON schema: 1 to 64 letters, digits, _ or -."),
    )
    schema_description = forms.CharField(
        label=_("Schema description"),
        required=False,
        help_text=_("For a JSON schema: what the reply is for, to help the model (optional)."),
    )
    schema = JSONTextField(
        label=_("JSON schema"),
        required=False,
        help_text=_("For a JSON schema: the schema the reply must follow, in JSON."),
        checks="object",
        messages={"data-bad-value": _("The schema must be a JSON object.")},
    )
    schema_strict = forms.BooleanField(
        label=_("Strict"),
        required=False,
        help_text=_("For a JSON schema: ask the provider to follow the schema exactly."),
    )
    tools = JSONTextField(
        label=_("Tools"),
        required=False,
        help_text=_(
            'A JSON list of function tools: [{"type": "function", "function": {"name": …, '
            '"description": …, "parameters": {JSON schema}}}].'
        ),
        checks="tools",
        messages={
            "data-bad-value": ToolsField.NOT_A_LIST,
            "data-bad-item": ToolsField.BAD_TOOL,
            "data-add-label": _("Add a function"),
        },
    )
    tool_choice = forms.ChoiceField(
        label=_("Tool choice"),
        required=False,
        choices=[
            ("", _("The model's default")),
            ("none", _("None: never call a tool")),
            ("auto", _("Auto: the model decides")),
            ("required", _("Required: call at least one tool")),
            ("function", _("A named function")),
        ],
    )
    tool_function = forms.CharField(
        label=_("Function name"),
        required=False,
        help_text=_("For a named function: the tool the model must call."),
    )

    NUMBERS = (
        "temperature", "top_p", "seed", "max_tokens", "n", "presence_penalty",
        "frequency_penalty",
    )  # fmt: skip
    GROUPS = (
        (_("Basics"), ("title", "model", "system_prompt")),
        (_("Sampling"), ("temperature", "top_p", "seed")),
        (_("Length"), ("max_tokens", "n", "stop")),
        (_("Penalties and biases"), ("presence_penalty", "frequency_penalty", "logit_bias")),
        (
            _("Response format"),
            ("response_format", "schema_name", "schema_description", "schema", "schema_strict"),
        ),
        (_("Tools"), ("tools", "tool_choice", "tool_function")),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        available = LanguageModel.objects.available_to(user)
        self.fields["model"].queryset = available
        self.initial.update(self._initial_from(self.instance.params), model=self.instance.model)
        self._show_defaults_of(self.instance.model or available.first())

    def groups(self):
        """(legend, bound fields) for each group of inputs, in the order shown."""
        for legend, names in self.GROUPS:
            yield legend, [self[name] for name in names if name in self.fields]

    def clean(self):
        cleaned = super().clean()
        params = self._params_from(cleaned)
        if self.errors:  # an input that is not even a value: the rest can wait
            return cleaned
        check = ParamsForm(params, model=cleaned.get("model"))
        if check.is_valid():
            cleaned["params"] = check.params()
        for name, errors in check.errors.items():
            self.add_error(name if name in self.fields else None, errors)
        return cleaned

    def save(self, commit=True):
        self.instance.params = self.cleaned_data["params"]
        return super().save(commit)

    def _params_from(self, cleaned):
        params = {name: cleaned.get(name) for name in (*self.NUMBERS, "stop", "logit_bias")}
        params["tools"] = cleaned.get("tools")
        kind = cleaned.get("response_format")
        if kind == "json_schema":
            if not cleaned.get("schema_name"):
                self.add_error("schema_name", _("Give the schema a name."))
            # What the inputs do not show (keys set over the websocket or by a newer
            # provider) is kept: saving the settings unchanged changes nothing.
            json_schema = {**self._stored_json_schema(), "name": cleaned.get("schema_name")}
            for key, value in [
                ("description", cleaned.get("schema_description") or None),
                ("schema", cleaned.get("schema")),
            ]:
                json_schema.pop(key, None)
                if value is not None:
                    json_schema[key] = value
            if cleaned.get("schema_strict") or "strict" in json_schema:
                json_schema["strict"] = bool(cleaned.get("schema_strict"))
            params["response_format"] = {"type": kind, "json_schema": json_schema}
        elif kind:
            params["response_format"] = {"type": kind}
        choice = cleaned.get("tool_choice")
        if choice == "function":
            name = cleaned.get("tool_function")
            if not name:
                self.add_error("tool_function", _("Name the function the model must call."))
            params["tool_choice"] = {"type": "function", "function": {"name": name}}
        elif choice:
            params["tool_choice"] = choice
        return {name: value for name, value in params.items() if value is not None}

    def _stored_json_schema(self):
        response_format = self.instance.params.get("response_format") or {}
        return dict(response_format.get("json_schema") or {})

    @classmethod
    def _initial_from(cls, params):
        initial = {name: params.get(name) for name in cls.NUMBERS}
        initial["stop"] = _stop_lines(params.get("stop"))
        initial["logit_bias"] = params.get("logit_bias") or {}
        response_format = params.get("response_format") or {}
        json_schema = response_format.get("json_schema") or {}
        initial["response_format"] = response_format.get("type", "")
        initial["schema_name"] = json_schema.get("name", "")
        initial["schema_description"] = json_schema.get("description", "")
        initial["schema"] = _json_text(json_schema.get("schema"))
        initial["schema_strict"] = bool(json_schema.get("strict"))
        initial["tools"] = _json_text(params.get("tools"))
        choice = params.get("tool_choice") or ""
        if isinstance(choice, dict):
            choice, initial["tool_function"] = "function", choice["function"]["name"]
        initial["tool_choice"] = choice
        return initial

    def _show_defaults_of(self, model):
        """The model's defaults as placeholders, and its output limit on max tokens."""
        if model is None:
            return
        for name, value in model.default_params.items():
            if name in self.NUMBERS:
                self.fields[name].widget.attrs["placeholder"] = value
        if stop := model.default_params.get("stop"):
            self.fields["stop"].widget.attrs["placeholder"] = _stop_lines(stop)
        if limit := model.max_output_tokens:
            field = self.fields["max_tokens"]
            field.widget.attrs["max"] = limit
            limit_text = _("%(model)s allows at most %(limit)s.") % {"model": model, "limit": limit}
            field.help_text = f"{field.help_text} {limit_text}"


class ConversationSettingsForm(RequestFieldsForm):
    """A conversation's title, model, system prompt and request fields."""

    class Meta:
        model = Conversation
        fields = ["title", "model", "system_prompt"]
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 4})}
        help_texts = {"system_prompt": _("Sent first, before the conversation's messages.")}

    def save(self, commit=True):
        if "title" in self.changed_data:
            self.instance.auto_title = False  # the user's own title stays
        return super().save(commit)


class PreferencesForm(RequestFieldsForm):
    """A user's defaults for new conversations: model, system prompt and request fields."""

    class Meta:
        model = Preferences
        fields = ["model", "system_prompt"]
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 4})}
        help_texts = {"system_prompt": _("Sent first, before each new conversation's messages.")}
