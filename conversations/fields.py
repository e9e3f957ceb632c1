"""A model field whose value is encrypted at rest with a key derived from SECRET_KEY."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


def _fernet():
    # One Fernet per secret so that rotating SECRET_KEY (old one kept in
    # SECRET_KEY_FALLBACKS) still decrypts what was stored before.
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"confab-fields:{k}".encode()).digest()))
            for k in keys
        ]
    )


class UndecryptableSecret(str):
    """Stands in for a value that the current SECRET_KEY cannot decrypt."""


class EncryptedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return _fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            return UndecryptableSecret("")

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return _fernet().encrypt(value.encode()).decode()
