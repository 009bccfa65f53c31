"""The one exception type the models package raises for bad user input."""


class ModelConfigError(ValueError):
    """A model option the user chose is invalid; the CLI reports it and exits with code 2."""
