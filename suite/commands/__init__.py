"""Sub-commands of the ``suite`` CLI: one module each, exposing ``register(subparsers)``."""
