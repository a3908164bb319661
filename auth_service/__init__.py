"""auth_service: a JWT-issuing authentication service (OAuth2 password grant, JWKS)."""

__version__ = "0.1.0"
