"""The environment agent: the platform's program inside every execution environment.

Stdlib only: it runs inside the sandbox (or the execution image) with the system Python.
"""
