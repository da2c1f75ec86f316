"""The reviews function (routes to come)."""

from shared.app_factory import create_app

app = create_app("reviews", [])
