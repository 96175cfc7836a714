from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from scrm.roles import Perm, permission_required


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(Perm.VIEW_CONSOLE):
        return render(request, "home.html")
    if request.user.has_perm(Perm.USE_GUIDE_APP):
        return redirect("guide_home")
    return render(request, "no_role.html", status=403)


def placeholder(*, title: str, issue: int, perm: str = Perm.VIEW_CONSOLE):
    """A page of the navigation that later work builds; says so plainly."""

    @permission_required(perm)
    def view(request: HttpRequest) -> HttpResponse:
        return render(request, "placeholder.html", {"title": title, "issue": issue})

    return view
