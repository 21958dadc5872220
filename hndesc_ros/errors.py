"""Exceptions the library raises on bad input; each message is one readable line."""


def describe(exc: BaseException, limit: int = 160) -> str:
    """``Type: first sentence of the message`` on one line, at most ``limit`` characters: how
    a library's own exception is quoted inside one of ours."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    message = ' '.join(lines[:2]).split('. ')[0]
    text = type(exc).__name__ + (': ' + message if message else '')
    return text if len(text) <= limit else text[:limit - 3] + '...'


class HndescError(ValueError):
    """Base class: bad input or configuration (a ValueError, so callers may catch either).

    ``reason`` is a short snake_case word for counters (a node counts dropped inputs by it);
    each class has a default, a raise site may be more precise.
    """

    reason = 'invalid'

    def __init__(self, message: str = '', reason: str = '') -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class ImageError(HndescError):
    """An image that cannot be used (unreadable, empty, wrong dtype/channels, too small)."""

    reason = 'bad_image'


class ConfigError(HndescError):
    """An invalid configuration value; the message names the key."""


class BackendUnavailable(HndescError):
    """The chosen inference backend cannot run here; the message says what to install."""


class CalibrationError(HndescError):
    """Camera calibration that the pipeline cannot use (zeros, unrectified, ...)."""

    reason = 'bad_camera_info'


class MessageError(HndescError):
    """A ROS message that does not have the documented layout (fields, sizes, encoding)."""

    reason = 'bad_layout'


class WeightsError(HndescError):
    """A weights file that cannot be used (missing, unreadable, wrong format, another variant
    than the one asked for, an engine built for other input sizes); the message names it."""
