from rest_framework.routers import DefaultRouter

from contacts import api

router = DefaultRouter()
router.register("stores", api.StoreViewSet)
router.register("guides", api.GuideViewSet)

urlpatterns = router.urls
