"""``python -m ferlib``: see :mod:`ferlib.cli`."""

from ferlib.cli import main

raise SystemExit(main())
