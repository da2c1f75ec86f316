"""The common package every function is built from: schema, database, auth, errors, app factory."""
