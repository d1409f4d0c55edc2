"""The request path: one concern a module (see each module's docstring)."""
