"""Use cases (register, authenticate, grants); each owns its transaction, none imports HTTP."""
