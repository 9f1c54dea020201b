"""``python -m bccd`` → the command line."""

from bccd.cli import main

raise SystemExit(main())
