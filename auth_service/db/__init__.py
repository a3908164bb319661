"""Database plumbing: the declarative base and engine/session factories (no globals)."""

from auth_service.db.base import Base
from auth_service.db.engine import create_engine, create_session_factory

__all__ = ["Base", "create_engine", "create_session_factory"]
