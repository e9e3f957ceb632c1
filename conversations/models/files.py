"""Files people bring into a conversation or a project, and the passages their text is cut
into: what a model reads whole when it fits, and what retrieval searches when it does not.

A file is stored through Django's storage API (the local file system by default, any
django-storages backend when configured); its text is extracted off the event loop
(conversations.files.processing) and kept as passages, in order, so that the passages
joined give the whole text back.
"""

import uuid

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class FileQuerySet(models.QuerySet):
    def for_user(self, user):
        """The only way to reach files: those the user uploaded, and those of the projects
        the user may use (conversations.models.projects)."""
        if not user.is_authenticated:
            return self.none()
        from conversations.models.projects import Project

        projects = Project.objects.for_user(user)
        return self.filter(models.Q(owner=user) | models.Q(project__in=projects)).distinct()

    def ready(self):
        return self.filter(status=File.Status.READY)


def _stored_name(file, name):
    return f"files/{file.owner_id}/{file.id}"


class File(models.Model):
    class Status(models.TextChoices):
        PROCESSING = "processing", _("processing")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")

    class Kind(models.TextChoices):
        PDF = "pdf", "PDF"
        DOCX = "docx", "DOCX"
        MARKDOWN = "markdown", "Markdown"
        TEXT = "text", _("text")
        CSV = "csv", "CSV"
        HTML = "html", "HTML"
        CODE = "code", _("source code")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="files"
    )
    # Where it belongs: a conversation (once a message brought it), or a project. A file
    # goes with what it belongs to; one that was never sent is purged after a day.
    conversation = models.ForeignKey(
        "Conversation", null=True, blank=True, on_delete=models.CASCADE, related_name="files"
    )
    message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="files"
    )
    project = models.ForeignKey(
        "Project", null=True, blank=True, on_delete=models.CASCADE, related_name="files"
    )
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    blob = models.FileField(upload_to=_stored_name, max_length=300)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PROCESSING
    )
    # While processing: how far, 0-100; and what is being done, for the progress shown.
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    # The whole text's size, estimated (conversations.usage): whether it fits a prompt.
    tokens = models.PositiveIntegerField(default=0)
    # Passages with an embedding so far (conversations.files.embeddings), and with which
    # model; embedding resumes from there after a pause (a rate limit, a restart).
    embedded = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)
    # Refreshed while a process works on it: a stale one is taken over (reaper).
    checkpointed = models.DateTimeField(default=timezone.now)

    objects = FileQuerySet.as_manager()

    class Meta:
        verbose_name = _("file")
        verbose_name_plural = _("files")
        ordering = ["created"]
        indexes = [models.Index(fields=["status", "checkpointed"], name="file_work")]

    def __str__(self):
        return self.name

    def to_dict(self):
        """The JSON of POST /files/ and GET /files/<id>/ (docs/protocol.md, Files)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "size": self.size,
            "status": self.status,
            "kind": self.kind,
            "progress": self.progress,
            "error": self.error or None,
            "pages": self.pages,
            "tokens": self.tokens,
            "conversation": str(self.conversation_id) if self.conversation_id else None,
            "project": str(self.project_id) if self.project_id else None,
            "created": self.created.isoformat(),
        }

    def text(self):
        """The whole extracted text. Note: loads every passage."""
        return "".join(self.passages.order_by("ordinal").values_list("text", flat=True))


class Passage(models.Model):
    """A stretch of a file's text, a few paragraphs long: what retrieval finds and cites."""

    file = models.ForeignKey(File, on_delete=models.CASCADE, related_name="passages")
    ordinal = models.PositiveIntegerField()
    # The PDF page it starts on (1-based); null for other kinds.
    page = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField()
    # Its embedding, as little-endian float32 bytes, once made (optional).
    embedding = models.BinaryField(null=True, blank=True)

    class Meta:
        verbose_name = _("passage")
        verbose_name_plural = _("passages")
        ordering = ["file", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["file", "ordinal"], name="one_passage_per_place")
        ]

    def __str__(self):
        return f"{self.file_id} #{self.ordinal}"

    def citation(self, n, file_name):
        """What a reply keeps of a passage it was given: enough to show it after the file
        is gone."""
        return {
            "n": n,
            "file": str(self.file_id),
            "name": file_name,
            "page": self.page,
            "passage": self.ordinal,
            "text": self.text.strip(),
        }


def delete_stored(sender, instance, **kwargs):
    """A file's bytes go with its row, however it goes: itself, or its conversation or
    project deleted (a cascade sends this signal for each file). After the commit: a
    rolled-back deletion keeps them."""
    if instance.blob:
        storage, name = instance.blob.storage, instance.blob.name
        transaction.on_commit(lambda: storage.delete(name))


models.signals.post_delete.connect(delete_stored, sender=File, dispatch_uid="file-bytes")
