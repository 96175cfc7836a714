from django.urls import path

from campaigns import views

urlpatterns = [
    path("campaigns/", views.campaign_list, name="campaigns"),
    path("campaigns/new/", views.campaign_edit, name="campaign_new"),
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/edit/", views.campaign_edit, name="campaign_edit"),
    path("campaigns/<int:campaign_id>/refresh/", views.campaign_refresh, name="campaign_refresh"),
    path("campaigns/codes/new/", views.code_edit, name="channel_code_new"),
    path("campaigns/codes/<int:code_id>/", views.code_detail, name="channel_code_detail"),
    path("campaigns/codes/<int:code_id>/edit/", views.code_edit, name="channel_code_edit"),
    path("campaigns/codes/<int:code_id>/qr.png", views.code_qr, name="channel_code_qr"),
]
