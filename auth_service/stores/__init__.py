"""Persistence adapters: SQL repositories and (later) Redis-backed stores."""
