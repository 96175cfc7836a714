from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from scrm.roles import Perm


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(Perm.VIEW_CONSOLE):
        return render(request, "home.html")
    if request.user.has_perm(Perm.USE_GUIDE_APP):
        return redirect("guide_home")
    return render(request, "no_role.html", status=403)
