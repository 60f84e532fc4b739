"""Timestamps in the one format every tool writes: ISO 8601, UTC, milliseconds, trailing Z."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_iso(moment: datetime) -> str:
    """Format an aware datetime as `2026-11-27T12:00:00.123Z` (sorts as text)."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def utc_now_iso() -> str:
    return format_iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_time_bound(text: str, now: datetime | None = None) -> datetime:
    """Parse a --since/--until value: an ISO date or datetime, or an age like 30m, 24h, 7d.

    Raises ValueError with a message that shows accepted forms.
    """
    value = text.strip()
    if match := _RELATIVE.match(value):
        amount, unit = match.groups()
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
        except OverflowError:  # timedelta and datetime stop at year 1
            raise ValueError(
                f"{text!r} reaches back before the year 1; use a smaller age or an ISO date"
            ) from None
    try:
        # In UTC here, so a time at the very end of year 9999 fails now, not when printed.
        return parse_iso(value).astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{text!r} is out of range; use a time between the years 1 and 9999"
        ) from None
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an ISO date or time (2026-11-27, "
            "2026-11-27T08:00:00Z) or an age such as 30m, 24h, 7d"
        ) from None
