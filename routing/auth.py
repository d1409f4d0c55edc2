from rest_framework import authentication

from routing.api_key_selectors import api_key_get_by_plaintext
from routing.gateway.http import bearer_token, key_refused


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` for the DRF views, read by the front door's rules;
    request.user is the ApiKey, request.auth the same."""

    keyword = "Bearer"

    def authenticate(self, request):
        plaintext = bearer_token(request)  # a malformed header is refused here
        if plaintext is None:
            return None  # then IsAuthenticated answers 401 missing_api_key
        api_key = api_key_get_by_plaintext(plaintext=plaintext)
        if api_key is None:
            raise key_refused()
        return api_key, api_key

    def authenticate_header(self, request) -> str:
        return self.keyword
