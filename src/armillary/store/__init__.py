"""Persistence: tables, migrations, repositories. The only package that imports
SQLAlchemy. Works on SQLite (the default, one file, WAL) and Postgres."""
