"""The users function: accounts, login and reviewer status (``/api/users/*``)."""

from functions.users.routes import UsersController
from shared.app_factory import create_app

app = create_app("users", [UsersController])
