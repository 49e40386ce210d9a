"""The foundation every other layer stands on: the data types (``types``), the hook
contract (``hookspecs``) and the plugin host that calls it (``host``), how mlhooks
reports its own errors (``errors``), every ``MLHOOKS_*`` variable (``settings``),
what ``autolog()`` was told (``config``) and the per-framework options integrations
declare (``options``), key and value checks (``validation``), secret masking
(``redaction``), whether a tracked fit is running (``activity``) and the one ordered
exit and fork sequence (``shutdown``).

May import: the standard library, pluggy and wrapt only; nothing else of mlhooks.
"""
