from django.urls import path

from scrm.routers import ApiRouter
from tagging import api

router = ApiRouter()  # the API root is contacts' router
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
