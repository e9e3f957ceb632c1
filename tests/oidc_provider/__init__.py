"""A real OpenID Connect provider for the single sign-on tests: a small Django project with
django-oauth-toolkit in OIDC mode, run on loopback by tests/identity_provider.py."""
