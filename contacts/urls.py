from django.urls import path

from contacts import order_views, views

urlpatterns = [
    path("customers/", views.customer_list, name="customers"),
    path("customers/export/", views.customer_export, name="customer_export"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path("guide/customers/", views.guide_customer_list, name="guide_customers"),
    path("guide/customers/<int:pk>/", views.guide_customer_detail, name="guide_customer_detail"),
    path("sync/", views.sync_page, name="sync"),
    path("sync/now/", views.sync_now, name="sync_now"),
]

urlpatterns += [
    path("orders/imports/", order_views.import_list, name="import_list"),
    path("orders/imports/upload", order_views.import_upload, name="import_upload"),
    path("orders/imports/<int:pk>/", order_views.import_detail, name="import_detail"),
    path("orders/imports/<int:pk>/status", order_views.import_status, name="import_status"),
    path("orders/imports/<int:pk>/errors.csv", order_views.import_errors_csv, name="import_errors"),
    path(
        "orders/imports/<int:pk>/rejected/<int:index>.csv",
        order_views.import_rejected_rows_csv,
        name="import_rejected_rows",
    ),
    path("orders/unmatched/", order_views.unmatched_orders, name="unmatched_orders"),
    path("orders/unmatched/<int:pk>/assign", order_views.order_assign, name="order_assign"),
    path("products/", order_views.product_list, name="products"),
    path("products/upload", order_views.product_upload, name="product_upload"),
    path("orders/suggestions/<int:pk>/", order_views.suggestion_decide, name="suggestion_decide"),
    path("orders/suggestions/<int:pk>/undo/", order_views.suggestion_undo, name="suggestion_undo"),
    path("customers/<int:pk>/merge/", order_views.customer_merge, name="customer_merge"),
    path("customers/merges/", order_views.merge_list, name="merge_list"),
    path("customers/merges/<int:pk>/undo/", order_views.merge_undo, name="merge_undo"),
    path("orders/bindings/<int:pk>/undo/", order_views.binding_undo, name="binding_undo"),
]
