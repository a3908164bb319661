"""Database plumbing: the declarative base, engines, compiled statements, drivers (no globals)."""

from auth_service.db.base import Base
from auth_service.db.engine import create_engine

__all__ = ["Base", "create_engine"]
