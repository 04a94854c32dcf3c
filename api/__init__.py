"""The HTTP service, the decision service behind it, and the ``miaopi`` command line."""

__all__: list[str] = []
