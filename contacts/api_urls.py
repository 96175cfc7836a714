from contacts import api
from scrm.routers import ApiRootRouter

router = ApiRootRouter()
router.register("stores", api.StoreViewSet)
router.register("guides", api.GuideViewSet)
router.register("customers", api.CustomerViewSet, basename="customer")
router.register("sync-runs", api.SyncRunViewSet)
router.register("orders", api.OrderViewSet, basename="order")

urlpatterns = router.urls
