"""Load and micro benchmarks for auth_service (`make bench`); see bench/README.md."""
