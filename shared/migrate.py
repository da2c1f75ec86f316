"""Apply the checked-in migrations: ``python -m shared.migrate`` (the Kubernetes migration Job)."""

import asyncio
import logging

from shared import db


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    asyncio.run(db.migrate())


if __name__ == "__main__":
    main()
