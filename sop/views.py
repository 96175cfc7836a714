from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scrm.roles import Perm, permission_required


@permission_required(Perm.USE_GUIDE_APP)
def guide_home(request: HttpRequest) -> HttpResponse:
    """The guide's phone page. The task list arrives with the SOP issue (#6)."""
    return render(request, "sop/guide_home.html")
