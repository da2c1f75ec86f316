"""The ingress: one route table, the local gateway that serves every function, and the docs."""
