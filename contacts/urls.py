from django.urls import path

from contacts import views

urlpatterns = [
    path("customers/", views.customer_list, name="customers"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path("guide/customers/", views.guide_customer_list, name="guide_customers"),
    path("guide/customers/<int:pk>/", views.guide_customer_detail, name="guide_customer_detail"),
    path("sync/", views.sync_page, name="sync"),
    path("sync/now/", views.sync_now, name="sync_now"),
]
