"""Exception tree: one base class, control-flow signals kept apart."""

from __future__ import annotations


class JobforgeError(Exception):
    """A jobforge operation failed."""

    code = "jobforge_error"
    http_status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(JobforgeError):
    """Invalid configuration."""

    code = "config_error"
    http_status = 400


class DatabaseURLError(ConfigError):
    """Malformed or unsupported database URL."""

    code = "bad_database_url"


class DatabaseUnavailable(JobforgeError):
    """The database cannot be reached."""

    code = "database_unavailable"
    http_status = 503


class AppLoadError(ConfigError):
    """The `--app module:attr` reference cannot be loaded."""

    code = "bad_app"


class ValidationError(JobforgeError):
    """Invalid input."""

    code = "invalid"
    http_status = 422


class UnknownJobType(ValidationError):
    """No handler is registered for this job type."""

    code = "unknown_job_type"


class PayloadError(ValidationError):
    """The payload is not a JSON object."""

    code = "bad_payload"


class PayloadTooLarge(ValidationError):
    """The payload is over the size limit."""

    code = "payload_too_large"
    http_status = 413


class JobNotFound(JobforgeError):
    """No such job."""

    code = "job_not_found"
    http_status = 404


class InvalidTransition(JobforgeError):
    """The job is not in a state that allows this."""

    code = "invalid_transition"
    http_status = 409


class JobControl(Exception):
    """Base of the exceptions a handler raises to steer its own job (not failures)."""


class Snooze(JobControl):
    """Run this job again after `seconds`, without using up an attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = float(seconds)


class Retry(JobControl):
    """Fail this attempt and retry after `delay` seconds (or the policy's backoff)."""

    def __init__(self, delay: float | None = None, message: str = "retry requested") -> None:
        super().__init__(message)
        self.delay = delay


class Cancel(JobControl):
    """End this job as `cancelled` without retrying."""


class Fail(JobControl):
    """End this job as `failed` now, without retrying (the message is its error)."""


class Park(Snooze):
    """A durable run parks its job until `seconds` from now, or until `event` is sent."""

    def __init__(self, seconds: float, event: str | None = None) -> None:
        super().__init__(seconds)
        self.event = event


class JobTimeout(Exception):
    """The job ran past its timeout."""
