"""Piccolo's configuration: the engine from shared.db and the platform's app registry."""

from piccolo.conf.apps import AppRegistry

from shared.db import DB, configure  # noqa: F401 - Piccolo looks DB up here

configure()

APP_REGISTRY = AppRegistry(apps=["shared.piccolo_app"])
