"""``python -m resolver`` runs the ``idnode`` command line."""

from resolver.cli import main

raise SystemExit(main())
