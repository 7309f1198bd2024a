"""Persistence: SQLAlchemy 2.x models, engine/session, Alembic migrations and the rating protocol.

Imports only sqlalchemy/alembic (and light obt_eval helpers) — never torch, never gradio.
"""

from db.engine import ENV_DB, Database, database_url, open_database

__all__ = ["ENV_DB", "Database", "database_url", "open_database"]
