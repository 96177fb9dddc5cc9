"""``python -m ferlib.classroom student|grade|mark ...``."""

from ferlib.classroom.cli import main

raise SystemExit(main())
