"""The multi-host scale test (`make scale-test`): namespaces, real engines, faults, load."""
