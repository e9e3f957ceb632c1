from django.conf import settings


def sign_in(request):
    """What the sign-in and invitation pages offer: the identity provider's button (named
    by the administrator, OIDC_PROVIDER_NAME) and whether passwords are for break-glass
    accounts only."""
    return {
        "sso_name": settings.CONFAB_SSO_NAME if settings.CONFAB_SSO else "",
        "sso_only": settings.CONFAB_SSO_ONLY,
    }
