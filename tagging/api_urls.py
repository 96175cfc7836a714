from django.urls import path
from rest_framework.routers import SimpleRouter

from tagging import api

router = SimpleRouter()  # the API root is contacts' router
router.register("tag-groups", api.TagGroupViewSet)
router.register("tags", api.TagViewSet, basename="tag")
router.register("tag-rules", api.TagRuleViewSet, basename="tagrule")

urlpatterns = [
    path(
        "customers/<int:customer_id>/tags/",
        api.CustomerTagsView.as_view(),
        name="customer-tags-api",
    ),
    *router.urls,
]
