"""Field masks a grant may set: the consumer sees ``110105********002X`` or ``张*``.

A mask is named in the grant file by a short spec:

- ``name`` — keep the first character (``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``);
- ``id-number`` — keep the first 6 and the last 4 characters (the GB 11643 example);
- ``keep:F:L`` — keep the first F and the last L characters;
- ``full`` — release only that the field exists: the value becomes ``null``.

Masks other than ``full`` apply to text fields only; the policy loader checks that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Mask", "parse_mask"]

_KEEP = re.compile(r"^keep:(\d{1,2}):(\d{1,2})$")


@dataclass(frozen=True, slots=True)
class Mask:
    """A parsed mask; call :meth:`apply` on a field's value."""

    spec: str
    _apply: Callable[[Any], Any]

    @property
    def text_only(self) -> bool:
        """Whether the mask needs a text field (every mask but ``full``)."""
        return self.spec != "full"

    def apply(self, value: Any) -> Any:
        """The masked value; ``None`` stays ``None``."""
        return None if value is None else self._apply(value)


def _keep(first: int, last: int) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        text = str(value)
        if len(text) <= first + last:
            # Too short to show both ends: show the first part and star the rest.
            shown = min(first, max(len(text) - 1, 0))
            return text[:shown] + "*" * (len(text) - shown)
        return text[:first] + "*" * (len(text) - first - last) + text[len(text) - last :]

    return apply


def parse_mask(spec: str) -> Mask:
    """Parse a mask spec; raise ``ValueError`` naming the problem."""
    if spec == "name":
        return Mask(spec, _keep(1, 0))
    if spec == "id-number":
        return Mask(spec, _keep(6, 4))
    if spec == "full":
        return Mask(spec, lambda _value: None)
    m = _KEEP.match(spec)
    if m:
        return Mask(spec, _keep(int(m.group(1)), int(m.group(2))))
    raise ValueError(f"unknown mask {spec!r} (name, id-number, keep:F:L or full)")
