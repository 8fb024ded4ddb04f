"""The ``scaling`` command."""
