"""`python -m fedslim.cli`: the same as the `fedslim` command."""

from . import main

main()
