"""What an owner chooses when sharing a conversation."""

from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Share


class ShareForm(forms.ModelForm):
    show_system_prompt = forms.BooleanField(
        label=_("Show the system prompt"),
        required=False,
        help_text=_("Hidden unless you choose to show it."),
    )
    expires_in_days = forms.TypedChoiceField(
        label=_("Expires"),
        coerce=int,
        empty_value=None,
        required=False,
        choices=[
            ("", _("Never")),
            (1, _("In a day")),
            (7, _("In a week")),
            (30, _("In 30 days")),
        ],
    )
    # The last message of the branch the page shows (?show= shows one it does not
    # remember); empty: the branch the conversation remembers.
    through = forms.UUIDField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Share
        fields = ["audience", "show_costs"]
        widgets = {"audience": forms.RadioSelect}
        help_texts = {"show_costs": _("The tokens and the cost of each reply; hidden otherwise.")}

    def take(self, conversation):
        """The share these choices make of the conversation, as it is now."""
        days = self.cleaned_data["expires_in_days"]
        return Share.take(
            conversation,
            through=self.cleaned_data["through"],
            show_system_prompt=self.cleaned_data["show_system_prompt"],
            audience=self.cleaned_data["audience"],
            show_costs=self.cleaned_data["show_costs"],
            expires=timezone.now() + timedelta(days=days) if days else None,
        )
