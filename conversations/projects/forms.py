"""A project's settings: its name, instructions, default model and parameters, and who it is
shared with."""

import json

from django import forms
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _

from conversations.forms import ParamsForm
from conversations.models import LanguageModel, Project


class ProjectForm(forms.ModelForm):
    params = forms.CharField(
        label=_("Default parameters"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_('Request fields as JSON, e.g. {"temperature": 0.2}. Empty: none.'),
    )

    class Meta:
        model = Project
        fields = ["name", "instructions", "model", "params", "groups", "editors"]
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 6}),
            "groups": forms.CheckboxSelectMultiple,
            "editors": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["model"].queryset = LanguageModel.objects.available_to(user)
        # Shared only with groups one belongs to (an administrator: with any group).
        groups = Group.objects.all() if user.is_staff else user.groups.all()
        self.fields["groups"].queryset = self.fields["editors"].queryset = groups
        if self.instance.pk:
            self.initial["params"] = (
                json.dumps(self.instance.params, ensure_ascii=False) if self.instance.params else ""
            )
        if self.instance.pk and self.instance.owner_id != user.pk:
            # An editor changes what the project holds; its owner alone, who it is shared with.
            del self.fields["groups"], self.fields["editors"]

    def clean_name(self):
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError(_("A name cannot be empty."))
        return name

    def clean_params(self):
        text = self.cleaned_data["params"].strip()
        if not text:
            return {}
        try:
            params = json.loads(text)
        except ValueError:
            raise forms.ValidationError(_("Must be a JSON object.")) from None
        if not isinstance(params, dict):
            raise forms.ValidationError(_("Must be a JSON object."))
        return params

    def clean(self):
        cleaned = super().clean()
        params = ParamsForm(cleaned.get("params") or {}, model=cleaned.get("model"))
        if params.is_valid():
            cleaned["params"] = params.params()
        else:
            self.add_error("params", params.error_text(prefix=""))
        return cleaned


class MoveForm(forms.Form):
    """Into one of the user's projects, or out of any (empty)."""

    project = forms.UUIDField(required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_project(self):
        project_id = self.cleaned_data["project"]
        if project_id is None:
            return None
        project = Project.objects.for_user(self.user).filter(id=project_id).first()
        if project is None:
            raise forms.ValidationError(_("No such project."))
        return project
