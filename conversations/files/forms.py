"""An upload's checks: a file of a kind Confab reads, within the site's size cap, for the
user's own use or a project they may change."""

from django import forms
from django.utils.translation import gettext_lazy as _

from conversations.files.extraction import kind_of
from conversations.models import Project, SiteSettings


class UploadForm(forms.Form):
    file = forms.FileField(
        error_messages={
            "required": _("Choose a file to upload (the form field `file`)."),
            "empty": _("The file is empty."),
        }
    )
    project = forms.UUIDField(required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.code = "invalid"

    def clean_file(self):
        upload = self.cleaned_data["file"]
        site = SiteSettings.load()
        if upload.size > site.file_max_mb * 1024 * 1024:
            self.code = "too_large"
            raise forms.ValidationError(
                _("%(name)s is larger than %(limit)s MB, the largest file this site takes.")
                % {"name": upload.name, "limit": site.file_max_mb}
            )
        head = upload.read(8)
        upload.seek(0)
        self.kind = kind_of(upload.name, head)
        if self.kind is None:
            self.code = "unsupported"
            raise forms.ValidationError(
                _(
                    "%(name)s is not a kind of file Confab reads. It takes PDF, Word (DOCX), "
                    "Markdown, plain text, CSV, HTML and source code."
                )
                % {"name": upload.name}
            )
        return upload

    def clean_project(self):
        project_id = self.cleaned_data["project"]
        if project_id is None:
            return None
        project = Project.objects.editable_by(self.user).filter(id=project_id).first()
        if project is None:
            self.code = "not_found"
            raise forms.ValidationError(_("No such project, or you may not add files to it."))
        return project

    def error_text(self):
        return " ".join(
            f"{name}: {error}" if name != "__all__" else str(error)
            for name, errors in self.errors.items()
            for error in errors
        )
