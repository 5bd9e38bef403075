"""A server that cannot be reached stops the node, in one message.

The OpenAI client retries a connection failure itself (``max_retries``); one that still fails
counts here. After ``unreachable_after`` such failures in a row (connection refused, DNS, TLS,
a timeout past the retries), with no answer between them, every later request is refused and
the node stops with :class:`EndpointUnreachableError`, naming the endpoint's parameter and
address. Whatever was answered or judged before is already stored and kept: a rerun asks only
the rest. A request that gets any reply from the server (even an HTTP error) resets the count.
"""

from __future__ import annotations

import threading


class EndpointUnreachableError(RuntimeError):
    """A server could not be reached ``unreachable_after`` times in a row."""


def is_connection_failure(error: BaseException) -> bool:
    """The OpenAI client's "no reply at all" errors (``APIConnectionError``, ``APITimeoutError``)."""
    import openai

    return isinstance(error, openai.APIConnectionError)


class ConsecutiveFailures:
    """Counts a server's consecutive connection failures (thread-safe)."""

    def __init__(
        self, *, limit: int, what: str, address: str, parameter: str, limit_parameter: str,
        then: str,
    ) -> None:  # fmt: skip
        self.limit = limit
        self.what = what
        self.address = address
        self.parameter = parameter
        self.limit_parameter = limit_parameter
        self.then = then
        self._count = 0
        self._lock = threading.Lock()
        self.stopped: EndpointUnreachableError | None = None

    def check(self) -> None:
        """Raise the stop once it happened (before any further request)."""
        if self.stopped is not None:
            raise self.stopped

    def succeeded(self) -> None:
        with self._lock:
            self._count = 0

    def failed(self, error: BaseException, how: str = "could not be reached") -> None:
        """Count one connection failure (or a reply that is no reply of the API: ``how``);
        raise :class:`EndpointUnreachableError` at the limit."""
        with self._lock:
            self._count += 1
            if self._count >= self.limit and self.stopped is None:
                first = str(error).splitlines()[0][:160] if str(error) else ""
                self.stopped = EndpointUnreachableError(
                    f"{self.what} stopped: {self.address} ({self.parameter}) {how} "
                    f"{self._count} times in a row ({type(error).__name__}: {first}; "
                    f"{self.limit_parameter} = {self.limit}). Start the server or fix "
                    f"{self.parameter}{self.then}"
                )
        self.check()
