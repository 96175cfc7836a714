"""Requests refused before any view reads them."""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.translation import gettext as _


class RefuseNulInQuery:
    """A NUL character in the query string (a search, a filter) is refused with 400: no
    text column can hold one (Postgres refuses it), and no one types it. Bodies are
    the views' own: a NUL in an imported file is that row's error."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any("\0" in key + "".join(values) for key, values in request.GET.lists()):
            message = _("请求里有无法处理的空字符（NUL），请去掉后再试。")
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
