"""The forms of the admin pages: a provider (its key write-only), a model (its defaults
checked by the one set of request-field rules), a tool server (its headers write-only),
and the usage dashboard's date range."""

from datetime import timedelta
from urllib.parse import urlsplit

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.forms.params import ParamsForm
from conversations.models import Approval, LanguageModel, Provider, ToolServer
from conversations.models.tools import FUNCTION_NAME


class ProviderForm(forms.ModelForm):
    # Not a URLField: its validator refuses hosts without a dot, such as a container
    # named "vllm" or "ollama" on the same network.
    base_url = forms.CharField(
        label=_("base URL"),
        max_length=200,
        help_text=_("For example https://api.openai.com/v1 or http://vllm:8000/v1"),
    )
    # Write-only: the stored key is never rendered back into the page.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Leave empty to keep the current key."),
    )
    clear_api_key = forms.BooleanField(label=_("Remove the stored key"), required=False)

    class Meta:
        model = Provider
        fields = [
            "name", "base_url", "api_key", "clear_api_key", "extra_headers",
            "first_byte_timeout_s", "idle_timeout_s", "enabled",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_key = self.instance.api_key if self.instance.pk else ""
        if self.instance.pk:
            self.fields["api_key"].help_text = _("Currently: %(hint)s. Leave empty to keep it.") % {
                "hint": self.instance.api_key_hint
            }

    def clean_api_key(self):
        if self.cleaned_data.get("clear_api_key"):
            return ""
        return self.cleaned_data["api_key"] or self.stored_key

    def clean_base_url(self):
        return http_address(self.cleaned_data["base_url"], "https://host/v1")

    def clean_extra_headers(self):
        headers = self.cleaned_data["extra_headers"] or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.isascii() and v.isascii()
            for k, v in headers.items()
        ):
            raise forms.ValidationError(
                _("Must be a JSON object of header names to values, in ASCII.")
            )
        if any(k.lower() == "authorization" for k in headers):
            raise forms.ValidationError(_("Put the key in the API key field, not in a header."))
        return headers


def http_address(value, example):
    url = urlsplit(value.strip())
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise forms.ValidationError(
            _("Enter an http:// or https:// address without a query, e.g. %(example)s.")
            % {"example": example}
        )
    return url.geturl()


def parse_headers(text):
    """ "Name: value" lines as a dict; a ValidationError names the line that is not one."""
    headers = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or not value or not (name + value).isascii() or " " in name:
            raise forms.ValidationError(
                _("Write each header as Name: value, in ASCII, one per line (not %(line)r).")
                % {"line": line.strip()[:40]}
            )
        headers[name] = value
    return headers


class ToolServerForm(forms.ModelForm):
    # Write-only, as a provider's key: they may carry tokens, and are never shown again.
    header_lines = forms.CharField(
        label=_("headers"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_("One per line, e.g. Authorization: Bearer …. Leave empty to keep them."),
    )
    clear_headers = forms.BooleanField(label=_("Remove the stored headers"), required=False)

    class Meta:
        model = ToolServer
        fields = [
            "name", "url", "header_lines", "clear_headers", "approval", "tool_approvals",
            "enabled", "groups",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if names := list(self.instance.headers) if self.instance.pk else []:
            self.fields["header_lines"].help_text = _(
                "Stored: %(names)s (values hidden). Enter them all again to change them; "
                "leave empty to keep them."
            ) % {"names": ", ".join(names)}

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not FUNCTION_NAME.match(name) or "__" in name:
            raise forms.ValidationError(
                _("Letters, digits, single _ and -: it begins the name of each of its tools.")
            )
        return name

    def clean_url(self):
        return http_address(self.cleaned_data["url"], "http://tools:8000/mcp")

    def clean_header_lines(self):
        return parse_headers(self.cleaned_data["header_lines"])

    def clean_tool_approvals(self):
        approvals = self.cleaned_data["tool_approvals"] or {}
        if not isinstance(approvals, dict) or not set(approvals.values()) <= set(Approval.values):
            raise forms.ValidationError(_('A JSON object of tool names to "auto", "ask" or "off".'))
        return approvals

    def save(self, commit=True):
        if self.cleaned_data["clear_headers"]:
            self.instance.headers = {}
        elif self.cleaned_data["header_lines"]:
            self.instance.headers = self.cleaned_data["header_lines"]
        return super().save(commit)


class LanguageModelForm(forms.ModelForm):
    class Meta:
        model = LanguageModel
        fields = [
            "provider", "upstream_id", "display_name", "enabled", "groups", "context_window",
            "max_output_tokens", "supports_tools", "supports_json", "supports_reasoning",
            "supports_n", "default_params", "extra_body",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        defaults = ParamsForm(cleaned.get("default_params") or {}, model=self.instance)
        if not defaults.is_valid():
            self.add_error("default_params", defaults.error_text(prefix=""))
        extra = cleaned.get("extra_body") or {}
        if not isinstance(extra, dict):
            self.add_error("extra_body", _("Must be a JSON object."))
        elif taken := sorted(set(extra) & (set(ParamsForm.base_fields) | ParamsForm.SET_BY_CONFAB)):
            self.add_error(
                "extra_body",
                _("Standard fields belong in default parameters: %(names)s.")
                % {"names": ", ".join(taken)},
            )
        return cleaned


class DateRangeForm(forms.Form):
    start = forms.DateField(
        label=_("from"), required=False, widget=forms.DateInput({"type": "date"})
    )
    end = forms.DateField(label=_("to"), required=False, widget=forms.DateInput({"type": "date"}))

    def range(self):
        """The chosen days, the last 30 by default, at most a year."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=29)
        start = max(min(start, end), end - timedelta(days=366))
        return start, end
