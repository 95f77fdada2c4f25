"""Typed errors with Ably error codes (ably-common `protocol/errors.json`).

Every invalid argument or forbidden operation raises `PresenceError`; the message names the
argument that was wrong, and the state of the presence set and the history is left unchanged.
"""

from __future__ import annotations

# Codes used by the reference, each with its title in ably-common's errors.json.
BAD_REQUEST = 40000  # Bad request
INVALID_PARAMETER_VALUE = 40003  # Invalid request parameter value
MESSAGE_TOO_LARGE = 40009  # Message too large
INVALID_CLIENT_ID = 40012  # Invalid client ID
INVALID_DATA = 40013  # Invalid message data or encoding
CAPABILITY_DENIED = 40160  # Client lacks the required capability
NOT_FOUND = 40400  # Resource not found
CHANNEL_STATE = 90001  # Channel in an invalid state for the operation
NO_CLIENT_ID = 91000  # Cannot enter presence without a clientId
PRESENCE_STATE = 91001  # Cannot enter presence in the channel's current state
OUT_OF_SYNC = 91005  # Presence state out of sync
PRESENCE_NOT_SUBSCRIBED = 91008  # Channel attached without the presence_subscribe mode (RTP11f1)
CONNECTION_CLOSED = 80017  # Connection closed

_STATUS = {
    BAD_REQUEST: 400,
    INVALID_PARAMETER_VALUE: 400,
    MESSAGE_TOO_LARGE: 400,
    INVALID_CLIENT_ID: 400,
    INVALID_DATA: 400,
    CAPABILITY_DENIED: 401,
    NOT_FOUND: 404,
    CHANNEL_STATE: 400,
    NO_CLIENT_ID: 400,
    PRESENCE_STATE: 400,
    OUT_OF_SYNC: 400,
    PRESENCE_NOT_SUBSCRIBED: 400,
    CONNECTION_CLOSED: 400,
}


class PresenceError(Exception):
    """An operation was refused. `code` is the Ably error code, `argument` the offending argument."""

    def __init__(
        self, code: int, message: str, argument: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.argument = argument
        self.status_code = status_code if status_code is not None else _STATUS.get(code, 400)

    def __repr__(self) -> str:
        return f"PresenceError({self.code}, {self.message!r})"

    def to_dict(self) -> dict:
        """The error in Ably's ErrorInfo shape."""
        return {"code": self.code, "statusCode": self.status_code, "message": self.message}
