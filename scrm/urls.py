from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scrm import health, views
from scrm.auth import LoginForm, TokenView
from scrm.wecom import callback, setup

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", health.healthz, name="healthz"),
    path("wecom/callback/", callback.callback, name="wecom_callback"),
    path("settings/wecom/", setup.setup_page, name="wecom_setup"),
    path("exports/", views.export_list, name="exports"),
    path("exports/<int:pk>/status", views.export_status, name="export_status"),
    path("exports/<int:pk>/download", views.export_download, name="export_download"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # with or without its trailing slash, as the routers' paths (`scrm.routers`)
    re_path(r"^api/v1/auth/token/?$", TokenView.as_view(), name="api-token"),
    path("api/v1/", include("contacts.api_urls")),
    path("api/v1/", include("tagging.api_urls")),
    path("api/v1/", include("analytics.api_urls")),
    path("api/v1/", include("sop.api_urls")),
    path("api/v1/", include("campaigns.api_urls")),
    path("", include("contacts.urls")),
    path("", include("tagging.urls")),
    path("", include("sop.urls")),
    path("", include("campaigns.urls")),
    path("", include("analytics.urls")),
]
