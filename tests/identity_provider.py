"""A real OpenID Connect provider on loopback (tests/oidc_provider, django-oauth-toolkit),
started as a process of its own, and what the tests do there: add people, disable them,
sign in as a person's browser would."""

import os
import re
import subprocess
import sys
import time
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conversations.management.commands.serve import free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "confab"
CLIENT_SECRET = "confab-test-secret"

SETUP = """
from oauth2_provider.models import Application
Application.objects.create(
    name="Confab", client_id={client_id!r}, client_secret={client_secret!r},
    client_type="confidential", authorization_grant_type="authorization-code",
    algorithm="RS256", skip_authorization=True, redirect_uris="",
)
"""
ADD_USER = """
from django.contrib.auth.models import Group, User
user = User.objects.create_user({username!r}, {email!r}, {password!r})
for name in {groups!r}:
    user.groups.add(Group.objects.get_or_create(name=name)[0])
"""
SET_ACTIVE = """
from django.contrib.auth.models import User
User.objects.filter(username={username!r}).update(is_active={active!r})
"""
ALLOW_REDIRECT = """
from oauth2_provider.models import Application
app = Application.objects.get(client_id={client_id!r})
app.redirect_uris = " ".join({{*app.redirect_uris.split(), {uri!r}}})
app.save()
"""


class IdentityProvider:
    def __init__(self, directory):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = self.url + "/o"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.directory = Path(directory)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
            "IDP_DATABASE": str(self.directory / "provider.sqlite3"),
            "IDP_RSA_KEY": pem,
            "IDP_ISSUER": self.issuer,
        }
        self.process = None

    def django(self, *args):
        subprocess.run(
            [sys.executable, "-m", "django", *args], env=self.env, cwd=ROOT, check=True,
            capture_output=True,
        )  # fmt: skip

    def shell(self, code):
        self.django("shell", "--no-imports", "-c", code)

    def start(self):
        self.django("migrate", "--noinput")
        self.shell(SETUP.format(client_id=CLIENT_ID, client_secret=CLIENT_SECRET))
        self.log = (self.directory / "provider.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            env=self.env, cwd=ROOT, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.issuer + "/.well-known/openid-configuration", timeout=1)
                return self
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError((self.directory / "provider.log").read_text()) from None
                time.sleep(0.2)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.log.close()

    def add_user(self, username, email, password, groups=()):
        self.shell(ADD_USER.format(username=username, email=email, password=password,
                                   groups=list(groups)))  # fmt: skip

    def set_active(self, username, active):
        self.shell(SET_ACTIVE.format(username=username, active=active))

    def allow_redirect(self, uri):
        self.shell(ALLOW_REDIRECT.format(client_id=CLIENT_ID, uri=uri))

    def confab_env(self, **more):
        """Confab's environment for this provider, as docs/administration.md describes it."""
        return {
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_ISSUER": self.issuer,
            "OIDC_AUTHORIZATION_ENDPOINT": self.issuer + "/authorize/",
            "OIDC_TOKEN_ENDPOINT": self.issuer + "/token/",
            "OIDC_USERINFO_ENDPOINT": self.issuer + "/userinfo/",
            "OIDC_JWKS_ENDPOINT": self.issuer + "/.well-known/jwks.json",
            **more,
        }

    def sign_in(self, authorize_url, username, password):
        """What a browser does at the provider: follow Confab's redirect, sign in, and come
        back with the callback URL (code and state) that it would then open at Confab."""
        browser = requests.Session()
        page = browser.get(authorize_url)  # redirected to the provider's sign-in page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        next_url = unescape(re.search(r'name="next" value="([^"]*)"', page.text).group(1))
        answer = browser.post(
            page.url,
            data={"csrfmiddlewaretoken": token, "username": username, "password": password,
                  "next": next_url},
            allow_redirects=False,
        )  # fmt: skip
        if answer.status_code != 302:
            return None  # the provider refused the sign-in
        answer = browser.get(urljoin(page.url, answer.headers["Location"]), allow_redirects=False)
        return answer.headers["Location"]


def settings_for(provider, settings, **more):
    """Point the in-process Confab (pytest-django's `settings`) at `provider`."""
    names = {
        "OIDC_CLIENT_ID": "OIDC_RP_CLIENT_ID",
        "OIDC_CLIENT_SECRET": "OIDC_RP_CLIENT_SECRET",
        "OIDC_ISSUER": "OIDC_ISSUER",
        "OIDC_AUTHORIZATION_ENDPOINT": "OIDC_OP_AUTHORIZATION_ENDPOINT",
        "OIDC_TOKEN_ENDPOINT": "OIDC_OP_TOKEN_ENDPOINT",
        "OIDC_USERINFO_ENDPOINT": "OIDC_OP_USER_ENDPOINT",
        "OIDC_JWKS_ENDPOINT": "OIDC_OP_JWKS_ENDPOINT",
        "OIDC_PROVIDER_NAME": "CONFAB_SSO_NAME",
    }
    for variable, value in provider.confab_env().items():
        setattr(settings, names[variable], value)
    settings.CONFAB_SSO = True
    for name, value in more.items():
        setattr(settings, name, value)
