"""A small service protected by auth_service.verify (see app.py)."""
