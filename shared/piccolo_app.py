"""The Piccolo app that owns the platform's tables and migrations."""

import os

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="platform",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=table_finder(modules=["shared.tables"], exclude_imported=False),
    migration_dependencies=[],
    commands=[],
)
