"""``python -m schemas export DIR``: see :mod:`schemas.export`."""

from schemas.export import main

raise SystemExit(main())
