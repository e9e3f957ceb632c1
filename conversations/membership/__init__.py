"""Who may come in, and how: invitations by e-mail, password resets, single sign-on through
an OpenID Connect identity provider (`sso`), and the "SSO only" rule that refuses local
passwords but those of break-glass administrators (`backends`)."""
