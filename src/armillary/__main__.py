"""`python -m armillary` runs the CLI."""

from armillary.main import main

main()
