"""The `armillary` command line: Typer app, one module per noun. Talks to the server
only through `armillary.client`; never opens the database."""
