"""The server's routes, one router per concern: call audio in and events out (``sockets``), the calls
and QA API (``calls_api``), tokens (``tokens_api``), health and metrics (``ops``), and the pages."""
