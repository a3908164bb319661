"""The shared stores in front of SQL: revocation state and login throttling (Redis or memory).

SQL persistence is in auth_service/repositories (one repository per aggregate).
"""
