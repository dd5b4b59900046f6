"""Thin commands over the services (typer); ``--json`` on every command, rich progress on long work."""
