"""Small forms of the pages: signing up, changing a password, renaming a conversation."""

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
