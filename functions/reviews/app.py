"""The reviews function: review requests for workspaces, their state machine and history."""

from functions.reviews.routes import ReviewsController
from shared.app_factory import create_app

app = create_app("reviews", [ReviewsController])
