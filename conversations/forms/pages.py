"""Small forms of the pages: signing up and renaming a conversation."""

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation


class SignupForm(UserCreationForm):
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
