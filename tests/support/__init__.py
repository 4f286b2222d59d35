"""What the tests share: real server and node processes, the CLI, waiting, ports.

Test modules and conftest files import from here and never from one another, so a
helper has one home and one copy. Nothing here is a fake: every helper drives a real
`armillary` process, the real Typer app or the real operating system.
"""
