"""HTTP layer: thin routers, dependencies, and the one error-to-response mapping."""
