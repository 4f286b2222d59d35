"""`python -m armillary` is the `armillary` command."""

from armillary.entry import main

main()
