"""The declarative model users write: one pydantic model per kind, the YAML loader,
JSON Schema export and the naming contract. Imports nothing else of Armillary's
but `armillary.errors`, so it can be used by the CLI, the server and other tools.
"""
