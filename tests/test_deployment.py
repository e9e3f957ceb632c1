"""What docs/deployment.md promises: its production environment passes Django's deployment
checks, each HTTPS setting comes from its variable, and the defaults still serve `make run` on
plain http."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The HTTPS settings, each read from the variable of its name (docs/configuration.md).
SETTINGS = [
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
]


def documented_environment(section):
    """The variables set in a section of docs/deployment.md: `NAME=value` lines of its shell
    blocks and `Environment=NAME=value` lines of its systemd unit."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = "\n".join(re.findall(r"```(?:sh|ini)\n(.*?)```", body, re.S))
    return dict(re.findall(r"^(?:Environment=)?([A-Z][A-Z_]+)=(\S+)$", blocks, re.M))


def manage(tmp_path, *args, **environment):
    """manage.py with a long secret key, DEBUG off, and no HTTPS variable but `environment`'s."""
    ours = {*SETTINGS, "TRUST_PROXY_HEADERS"}
    env = {name: value for name, value in os.environ.items() if name not in ours}
    env |= {
        "CONFAB_VAR_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "false",
        **environment,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )


def settings_with(tmp_path, **environment):
    code = (
        "import json; from django.conf import settings;"
        f"print(json.dumps({{name: getattr(settings, name) for name in {SETTINGS}}}))"
    )
    shown = manage(tmp_path, "shell", "--no-imports", "-c", code, **environment)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


@pytest.mark.parametrize("section", ["On a server", "Behind a reverse proxy"])
def test_the_documented_production_environment_passes_the_deployment_checks(tmp_path, section):
    environment = documented_environment(section)
    assert "SECURE_HSTS_SECONDS" in environment  # the HTTPS settings are documented there

    checked = manage(tmp_path, "check", "--deploy", **environment)

    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues (0 silenced)." in checked.stdout, checked.stderr


def test_https_is_off_by_default_so_make_run_serves_plain_http(tmp_path):
    assert settings_with(tmp_path) == {
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_each_https_setting_comes_from_its_variable(tmp_path):
    assert settings_with(
        tmp_path,
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="yes",
        SECURE_HSTS_PRELOAD="on",
        SESSION_COOKIE_SECURE="1",
        CSRF_COOKIE_SECURE="true",
        TRUST_PROXY_HEADERS="true",
    ) == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def shown(tmp_path, names, **environment):
    code = (
        "import json; from django.conf import settings;"
        f"print(json.dumps({{name: getattr(settings, name) for name in {names}}}))"
    )
    result = manage(tmp_path, "shell", "--no-imports", "-c", code, **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


EMAIL = ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_USE_SSL",
         "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "DEFAULT_FROM_EMAIL"]  # fmt: skip


def test_without_a_mail_server_messages_go_to_the_console(tmp_path):
    assert shown(tmp_path, EMAIL)["EMAIL_BACKEND"] == (
        "django.core.mail.backends.console.EmailBackend"
    )


def test_each_email_setting_comes_from_its_variable(tmp_path):
    assert shown(
        tmp_path,
        EMAIL,
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_USE_TLS="true",
        EMAIL_HOST_USER="confab@example.com",
        EMAIL_HOST_PASSWORD="s3cret",
        DEFAULT_FROM_EMAIL="Confab <confab@example.com>",
    ) == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_HOST_USER": "confab@example.com",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "DEFAULT_FROM_EMAIL": "Confab <confab@example.com>",
    }


def test_tls_and_ssl_together_stop_the_start(tmp_path):
    checked = manage(tmp_path, "check", EMAIL_USE_TLS="true", EMAIL_USE_SSL="true")

    assert checked.returncode != 0
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other" in checked.stderr


def test_single_sign_on_needs_its_issuer_and_endpoints(tmp_path):
    checked = manage(tmp_path, "check", OIDC_CLIENT_ID="confab")

    assert checked.returncode != 0
    assert "OIDC_ISSUER must be set with OIDC_CLIENT_ID" in checked.stderr


@pytest.mark.parametrize("section", ["Single sign-on"])
def test_the_documented_single_sign_on_environments_start(tmp_path, section):
    text = (ROOT / "docs" / "deployment.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```ini\n(.*?)```", body, re.S):
        environment = dict(re.findall(r'^Environment="?([A-Z_]+)=(.*?)"?$', block, re.M))
        assert "OIDC_CLIENT_ID" in environment
        shown_now = shown(tmp_path, ["CONFAB_SSO", "CONTENT_SECURITY_POLICY"], **environment)
        assert shown_now["CONFAB_SSO"] is True
        origin = environment["OIDC_AUTHORIZATION_ENDPOINT"].split("/", 3)
        assert (
            "/".join(origin[:3])
            in shown_now["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["form-action"]
        )
