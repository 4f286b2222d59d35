"""The errors every layer of Armillary raises, and what each asks the caller to do.

    ArmillaryError
    ├── Invalid            the input is wrong; fix it (carries one Issue per place)
    │   ├── TooLarge       the input is over a size limit
    │   └── ProtocolError  a node protocol message is malformed; names the field and
    │                      what was expected there (the session is closed)
    ├── NotFound           the named thing does not exist
    ├── Conflict           someone wrote first (stale resourceVersion); re-read, retry
    ├── Gone               it was there and was handed over or used up; do not retry
    ├── Unauthorized       no credentials, or credentials we do not accept
    ├── Forbidden          credentials accepted, action not allowed
    ├── SpawnError         a replica's process could not start (`reason`: PortInUse,
    │                      CommandNotFound, …); its restart policy decides what next
    ├── TemporaryError     try again after `delay_s` (controllers back off)
    │   ├── RateLimited    over a rate limit; the next request is allowed in `delay_s`
    │   └── TimedOut       the request's body did not arrive in time; send it again
    └── PermanentError     retrying will not help; surface it
        ├── CheckoutFailed a release's tree could not be exported; the replica fails
        └── SessionRefused the server refused a node daemon for good (bad token,
                           another protocol version, a hello it cannot accept)

The API turns each into an application/problem+json response with its own status
code (see armillary.api.problems), with `Retry-After` for a `TemporaryError`; the
node hub turns each into a WebSocket close code (armillary.protocol.close_code); the
CLI turns each into an exit code. Only the loop boundaries (request handlers,
controller workers, the node daemon's connection loop) catch `Exception`.

This module imports nothing of Armillary's and nothing outside the standard
library, so every part — the node daemon included — can raise these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One thing wrong with an input: where it is and what was expected there.

    `path` is the field path inside one document (``spec.components[1].replicas``),
    `file` and `line` are filled when the document came from a file.
    """

    path: str
    message: str
    file: str | None = None
    line: int | None = None
    document: int | None = None

    def where(self) -> str:
        """`file:line` when known, else `document[i]`, else empty."""
        if self.file is not None:
            return f"{self.file}:{self.line}" if self.line is not None else self.file
        if self.document is not None:
            return f"document[{self.document}]"
        return ""

    def __str__(self) -> str:
        parts = [p for p in (self.where(), self.path) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class ArmillaryError(Exception):
    """Base of every error Armillary raises on purpose."""

    status_code = 500
    title = "Internal error"


class Invalid(ArmillaryError):
    """The input is wrong. `issues` names each place and what was expected."""

    status_code = 422
    title = "Invalid input"

    def __init__(self, issues: list[Issue] | str) -> None:
        if isinstance(issues, str):
            issues = [Issue(path="", message=issues)]
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class TooLarge(Invalid):
    """The input is over a size limit."""

    status_code = 413
    title = "Input too large"


class NotFound(ArmillaryError):
    """The named thing does not exist."""

    status_code = 404
    title = "Not found"


class Conflict(ArmillaryError):
    """The write was based on a version that has since moved: re-read and retry."""

    status_code = 409
    title = "Conflict"


class Gone(ArmillaryError):
    """The thing existed but was handed over once (or used up); asking again will not help."""

    status_code = 410
    title = "Gone"


class Unauthorized(ArmillaryError):
    """No credentials, or credentials Armillary does not accept."""

    status_code = 401
    title = "Unauthorized"


class Forbidden(ArmillaryError):
    """Credentials accepted, but the action is not allowed for them."""

    status_code = 403
    title = "Forbidden"


class TemporaryError(ArmillaryError):
    """Try again after `delay_s` seconds; controllers requeue the key."""

    status_code = 503
    title = "Temporarily unavailable"

    def __init__(self, message: str, *, delay_s: float = 1.0) -> None:
        self.delay_s = delay_s
        super().__init__(message)


class RateLimited(TemporaryError):
    """Over a rate limit: the next request is allowed in `delay_s` seconds."""

    status_code = 429
    title = "Too many requests"


class TimedOut(TemporaryError):
    """The client did not send its whole request in time; the connection is closed,
    and the request may be sent again."""

    status_code = 408
    title = "Request timeout"


class PermanentError(ArmillaryError):
    """Retrying will not help; the reason is surfaced in status."""

    status_code = 500
    title = "Permanent error"


class ProtocolError(Invalid):
    """A node protocol message that does not match the protocol; says which field and
    what was expected there."""

    title = "Protocol error"


class SpawnError(ArmillaryError):
    """A replica's process could not be started; `reason` is machine-readable."""

    title = "Cannot start the process"

    def __init__(self, *, reason: str, message: str) -> None:
        self.reason = reason  # PortInUse, CommandNotFound, PermissionDenied, …
        self.message = message
        super().__init__(f"{reason}: {message}")


class CheckoutFailed(PermanentError):
    """The tree of a commit could not be exported; the message says why, for people."""

    title = "Checkout failed"


class SessionRefused(PermanentError):
    """The server refused a node daemon's session for a reason retrying cannot fix."""

    title = "Session refused"


def combine(failures: list[Invalid]) -> Invalid:
    """One error carrying every issue of `failures`; a `TooLarge` if any of them was."""
    issues = [issue for failure in failures for issue in failure.issues]
    if any(isinstance(f, TooLarge) for f in failures):
        return TooLarge(issues)
    return Invalid(issues)
