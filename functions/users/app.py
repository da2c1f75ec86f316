"""The users function: accounts and login. Also the platform's front door (root, health, docs)."""

from functions.users.routes import UsersController
from ingress.front import front_door_handlers, merged_openapi
from shared.app_factory import create_app

app = create_app(
    "users", [UsersController], extra_handlers=front_door_handlers(), docs=merged_openapi
)
