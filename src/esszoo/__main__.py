"""`python -m esszoo ...` is the `esszoo` command."""

from esszoo.cli import main

main()
