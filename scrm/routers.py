"""The API's routers: a path answers with or without its trailing slash.

DRF's routers end every path in "/", and Django answers the other form with a
redirect, which many clients follow without a POST's body (the issue names
`POST /api/v1/orders/bulk`). Reversed, a path has none: /api/v1/orders/bulk.
"""

from rest_framework.routers import DefaultRouter, SimpleRouter


class ApiRouter(SimpleRouter):
    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


class ApiRootRouter(DefaultRouter):
    """The router with the API's root page (contacts')."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
