"""The rules for the request fields of Chat Completions (DESIGN.md §1): one set, used by
the websocket's sends, the settings forms and the administrator's model defaults."""

import re

from django import forms
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


def _between(field_class, low, high, **kwargs):
    """A number field whose error names the allowed range, in the language of the moment."""
    message = lazy(
        lambda: gettext("Must be between %(low)s and %(high)s.") % {"low": low, "high": high},
        str,
    )()
    return field_class(
        required=False,
        min_value=low,
        max_value=high,
        error_messages={"min_value": message, "max_value": message, "invalid": message},
        **kwargs,
    )


class StopField(forms.Field):
    """`stop`: a string or a list of up to four strings."""

    def to_python(self, value):
        if value in (None, "", []):
            return None
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= 4
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise forms.ValidationError(_("Must be a string or a list of up to 4 strings."))
        return value


class LogitBiasField(forms.Field):
    """`logit_bias`: token ids (integers written as strings) to a bias from -100 to 100."""

    def to_python(self, value):
        if value in (None, {}):
            return None
        message = _("Must map token ids (integers as strings) to numbers from -100 to 100.")
        if not isinstance(value, dict) or len(value) > 1024:
            raise forms.ValidationError(message)
        for token, bias in value.items():
            is_token = isinstance(token, str) and token.isascii() and token.isdigit()
            if not is_token or isinstance(bias, bool) or not isinstance(bias, int | float):
                raise forms.ValidationError(message)
            if not -100 <= bias <= 100:
                raise forms.ValidationError(message)
        return value


FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolsField(forms.Field):
    """`tools`: function tools, each with a name and a JSON schema of its parameters."""

    NOT_A_LIST = _("Must be a list of up to 128 function tools.")
    BAD_TOOL = _(
        'Each tool must be {"type": "function", "function": {"name": …, '
        '"description": …, "parameters": {JSON schema}}}, with a name of '
        "1 to 64 letters, digits, _ or -."
    )

    def to_python(self, value):
        if value in (None, []):
            return None
        if not isinstance(value, list) or len(value) > 128:
            raise forms.ValidationError(self.NOT_A_LIST)
        for tool in value:
            function = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(function, dict)
                or tool.get("type") != "function"
                or not isinstance(function.get("name"), str)
                or not FUNCTION_NAME.match(function["name"])
                or not isinstance(function.get("parameters", {}), dict)
                or not isinstance(function.get("description", ""), str)
            ):
                raise forms.ValidationError(self.BAD_TOOL)
        return value


class ToolChoiceField(forms.Field):
    """`tool_choice`: none, auto, required, or a named function."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("none", "auto", "required"):
            return value
        function = value.get("function") if isinstance(value, dict) else None
        if (
            isinstance(function, dict)
            and value.get("type") == "function"
            and isinstance(function.get("name"), str)
        ):
            return value
        raise forms.ValidationError(
            _(
                'Must be "none", "auto", "required" or '
                '{"type": "function", "function": {"name": …}}.'
            )
        )


class ResponseFormatField(forms.Field):
    """`response_format`: text, json_object, or json_schema with a name and a schema."""

    def to_python(self, value):
        if value in (None, {}):
            return None
        kind = value.get("type") if isinstance(value, dict) else None
        if kind in ("text", "json_object"):
            return {"type": kind}
        schema = value.get("json_schema") if kind == "json_schema" else None
        if (
            isinstance(schema, dict)
            and isinstance(schema.get("name"), str)
            and FUNCTION_NAME.match(schema["name"])
            and isinstance(schema.get("schema", {}), dict)
        ):
            return value
        raise forms.ValidationError(
            _(
                'Must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", '
                '"json_schema": {"name": …, "schema": {…}}}.'
            )
        )


class ParamsForm(forms.Form):
    """The request fields of Chat Completions that a user or an administrator may set.

    One set of rules (DESIGN.md §1) for the websocket, the conversation settings and the
    administrator's model defaults. `model`, `messages` and `user` are Confab's own to set;
    `stream` and `stream_options` are always on.
    """

    temperature = _between(forms.FloatField, 0, 2)
    top_p = _between(forms.FloatField, 0, 1)
    n = _between(forms.IntegerField, 1, 8)
    stop = StopField(required=False)
    max_tokens = _between(forms.IntegerField, 1, 10_000_000)
    presence_penalty = _between(forms.FloatField, -2, 2)
    frequency_penalty = _between(forms.FloatField, -2, 2)
    logit_bias = LogitBiasField(required=False)
    tools = ToolsField(required=False)
    tool_choice = ToolChoiceField(required=False)
    response_format = ResponseFormatField(required=False)
    seed = _between(forms.IntegerField, -(2**63), 2**63 - 1)
    stream = forms.Field(required=False)
    stream_options = forms.Field(required=False)

    SET_BY_CONFAB = {"model", "messages", "user"}
    FIXED = {"stream", "stream_options"}

    def __init__(self, data, *, model=None):
        super().__init__(data if isinstance(data, dict) else {})
        self.model = model

    def clean(self):
        for name in sorted(set(self.data) & self.SET_BY_CONFAB):
            self.add_error(
                None, _("%(name)s is set by Confab, not by parameters.") % {"name": name}
            )
        unknown = set(self.data) - set(self.fields) - self.SET_BY_CONFAB
        if unknown:
            self.add_error(
                None,
                _("Unknown parameter: %(names)s.")
                % {"names": ", ".join(sorted(map(str, unknown)))},
            )
        cleaned = super().clean()
        if self.data.get("stream", True) is not True:
            self.add_error("stream", _("Confab always streams: only true is allowed."))
        if self.data.get("stream_options", {}) not in ({}, {"include_usage": True}):
            self.add_error("stream_options", _('Always {"include_usage": true}.'))
        self._check_capabilities(cleaned)
        limit = self.model.max_output_tokens if self.model else None
        if limit and (cleaned.get("max_tokens") or 0) > limit:
            self.add_error(
                "max_tokens",
                _("Must be between 1 and %(limit)s for this model.") % {"limit": limit},
            )
        choice = cleaned.get("tool_choice")
        if isinstance(choice, dict):
            names = {t["function"]["name"] for t in cleaned.get("tools") or ()}
            if choice["function"]["name"] not in names:
                self.add_error("tool_choice", _("Must name one of the tools."))
        elif choice in ("auto", "required") and not cleaned.get("tools"):
            self.add_error("tool_choice", _("Needs tools to choose from."))
        return cleaned

    def _check_capabilities(self, cleaned):
        """Refuse what the administrator says this model cannot do, before asking it."""
        model = self.model
        if model is None:
            return
        response_format = (cleaned.get("response_format") or {}).get("type", "text")
        refused = [
            ("tools", cleaned.get("tools") and not model.supports_tools),
            ("response_format", response_format != "text" and not model.supports_json),
            ("n", (cleaned.get("n") or 1) > 1 and not model.supports_n),
        ]
        for name, is_refused in refused:
            if is_refused:
                self.add_error(name, _("This model does not support it."))

    def params(self):
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if value is not None and name not in self.FIXED
        }

    def error_text(self, prefix="params."):
        return error_text(self, prefix)


def error_text(form, prefix=""):
    """One readable sentence from a form's errors, naming the fields."""
    parts = []
    for name, errors in form.errors.items():
        text = " ".join(str(e) for e in errors)
        parts.append(text if name == "__all__" else f"{prefix}{name}: {text}")
    return " ".join(parts)
