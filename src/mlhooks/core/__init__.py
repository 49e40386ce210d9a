"""The foundation every other layer stands on: the data types (``types``), the hook
contract (``hookspecs``) and the plugin host that calls it (``host``), how mlhooks
reports its own errors (``errors``), settings read from ``MLHOOKS_*`` variables
(``config``), the per-framework options integrations declare (``options``), key and
value checks (``validation``), secret masking (``redaction``)
and whether a tracked fit is running (``activity``).

May import: the standard library, pluggy and wrapt only; nothing else of mlhooks.
"""
