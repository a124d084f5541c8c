"""Belt and braces for ngx_http_static_gen_module.

nginx already refuses to store a response with Set-Cookie (Django sets the
csrftoken cookie on every response whose page used a CSRF token) and never
stores requests with the session cookie. This middleware also tells nginx
explicitly not to store a page that:

- embeds a CSRF token (any `{% csrf_token %}` or get_token() call), or
- was rendered for a logged-in user (say nginx's static_gen_session_cookie
  were set to the wrong cookie name).

It says so with `X-Accel-Expires: 0`, which the module honours as nginx's
own caches do, and which nginx never passes on to the client. (The module's
own `X-Static-Gen: no-store` works as well, but nginx passes it on to the
client when the request bypassed the module, as a logged-in one does.)

It sits after CsrfViewMiddleware in MIDDLEWARE, so it sees the response
before that one clears its "token used" flag.
"""


class StaticGenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or (
            user is not None and user.is_authenticated
        ):
            response["X-Accel-Expires"] = "0"
        return response
