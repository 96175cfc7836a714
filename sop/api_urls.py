from django.urls import path

from scrm.routers import ApiRouter
from sop import api

router = ApiRouter()  # the API root is contacts' router
router.register("sop-plans", api.SopPlanViewSet, basename="sop-plan")
router.register("sop-touchpoints", api.TouchpointViewSet, basename="sop-touchpoint")

urlpatterns = [
    path("sop-policy/", api.PolicyView.as_view(), name="sop-policy"),
    *router.urls,
]
