from rest_framework import authentication, exceptions

from routing.selectors import api_key_get_by_plaintext


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`; request.user is the ApiKey, request.auth the same."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, plaintext = header.partition(" ")
        if scheme.lower() != "bearer" or not plaintext.strip():
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        api_key = api_key_get_by_plaintext(plaintext=plaintext.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return api_key, api_key

    def authenticate_header(self, request) -> str:
        return self.keyword
