"""`python -m dinovault ...`: the same as the `dinovault` command."""

from dinovault.cli import main

raise SystemExit(main())
