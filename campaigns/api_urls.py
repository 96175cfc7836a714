from django.urls import path

from campaigns import api
from scrm.routers import ApiRouter

router = ApiRouter()  # the API root is contacts' router
router.register("channel-codes", api.ChannelCodeViewSet, basename="channel-code")
router.register("campaigns", api.CampaignViewSet, basename="campaign")

urlpatterns = [
    path("customer-groups/stats/", api.GroupStatsView.as_view(), name="customer-group-stats"),
    path("channel-codes/<int:pk>/qr.png", api.ChannelCodeQRView.as_view(), name="channel-code-qr"),
    *router.urls,
]
