"""Model fields of our own: a value encrypted at rest with a key derived from SECRET_KEY,
and a JSON object that is empty unless set."""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


def _keys():
    # Every secret, so that rotating SECRET_KEY (the old one kept in SECRET_KEY_FALLBACKS)
    # still decrypts what was stored before.
    return (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", []))


@functools.lru_cache(maxsize=8)
def _fernet(keys):
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"confab-fields:{k}".encode()).digest()))
            for k in keys
        ]
    )


# Every send loads its provider, key included: decrypting (an HMAC check and AES) each time
# was about 3 % of the CPU of starting a reply. The plain key is in this process's memory
# whenever it is used anyway.
@functools.lru_cache(maxsize=1024)
def _decrypt(token, keys):
    return _fernet(keys).decrypt(token.encode()).decode()


class UndecryptableSecret(str):
    """Stands in for a value that the current SECRET_KEY cannot decrypt."""


class EncryptedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return _decrypt(value, _keys())
        except InvalidToken:
            return UndecryptableSecret("")

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return _fernet(_keys()).encrypt(value.encode()).decode()


def json_object_field(verbose_name, help_text):
    """A JSON object, empty unless set, that an administrator may leave blank."""
    return models.JSONField(verbose_name, default=dict, blank=True, help_text=help_text)
