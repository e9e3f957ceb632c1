"""Small forms of the pages: signing up, changing a password, renaming a conversation, and
choosing the tools a conversation's models may call."""

from django import forms
from django.contrib.auth import forms as auth
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation


class PasswordErrorsUnderThePassword:
    """Django puts what is wrong with a new password (too short, too common) under its
    confirmation; here it goes under the password, where it was typed. A confirmation that
    does not match stays under the confirmation."""

    def validate_password_for_user(self, user, password_field_name="password2"):
        typed = password_field_name.replace("password2", "password1")
        super().validate_password_for_user(user, password_field_name=typed)


class SignupForm(PasswordErrorsUnderThePassword, auth.UserCreationForm):
    pass


class PasswordChangeForm(PasswordErrorsUnderThePassword, auth.PasswordChangeForm):
    pass


class AdminUserCreationForm(PasswordErrorsUnderThePassword, auth.AdminUserCreationForm):
    pass


class AdminPasswordChangeForm(PasswordErrorsUnderThePassword, auth.AdminPasswordChangeForm):
    pass


class RenameForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["title"]

    def clean_title(self):
        title = " ".join(self.cleaned_data["title"].split())
        if not title:
            raise forms.ValidationError(_("A title cannot be empty."))
        return title


class ConversationToolsForm(forms.Form):
    """The server's tools in one conversation: all off, some off, and whether the calls
    the user allowed always here should ask again."""

    use_tools = forms.BooleanField(
        label=_("Let models call the server's tools in this conversation"), required=False
    )
    tools = forms.MultipleChoiceField(
        label=_("Tools offered"), required=False, widget=forms.CheckboxSelectMultiple
    )
    ask_again = forms.BooleanField(required=False)

    def __init__(self, data=None, *, conversation, available):
        self.conversation = conversation
        switched_off = set(conversation.tools_switched_off)
        super().__init__(
            data,
            initial={
                "use_tools": not conversation.tools_off,
                "tools": [name for name in available if name not in switched_off],
            },
        )
        self.fields["tools"].choices = [
            (name, f"{tool.label}: {tool.description}" if tool.description else tool.label)
            for name, tool in available.items()
        ]
        if always := conversation.tools_always_allowed:
            self.fields["ask_again"].label = _(
                "Ask again before running %(tools)s (allowed always here)"
            ) % {"tools": ", ".join(always)}
        else:
            del self.fields["ask_again"]

    def save(self):
        offered = set(self.cleaned_data["tools"])
        conversation = self.conversation
        conversation.tools_off = not self.cleaned_data["use_tools"]
        # What is not ticked is off; a tool added later is offered until switched off.
        conversation.tools_switched_off = [
            name for name, _label in self.fields["tools"].choices if name not in offered
        ]
        if self.cleaned_data.get("ask_again"):
            conversation.tools_always_allowed = []
        conversation.save(update_fields=["tools_off", "tools_switched_off", "tools_always_allowed"])
