"""`python -m replicate_emulator --help`."""

from .cli import main

raise SystemExit(main())
