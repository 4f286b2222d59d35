"""CPU and memory quantities as users write them, read into integer units.

CPU: cores as a number (`0.5`) or millicores as a string (`"500m"`).
Memory: MiB as an integer (`256`) or a string with a binary or decimal suffix
(`"256Mi"`, `"1Gi"`, `"512M"`, `"1G"`). Both forms are what Kubernetes users write.
"""

from __future__ import annotations

import decimal
import math
import re

_CPU = re.compile(r"^(?P<n>[0-9]+)m$", re.ASCII)
_MEMORY = re.compile(r"^(?P<n>[0-9]+(\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|K|M|G|T)?$", re.ASCII)
_BYTES = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}


def cpu_millicores(value: float | int | str) -> int:
    """`0.5` or `"500m"` → 500. Raises ValueError saying what is expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected CPU as cores (0.5) or millicores ('500m'), got {value!r}")
    if isinstance(value, int | float):
        millis = _exact(value) * 1000
    else:
        match = _CPU.fullmatch(value.strip())
        if match is None:
            try:
                millis = _exact(value) * 1000
            except (ValueError, decimal.InvalidOperation):
                raise ValueError(
                    f"expected CPU as cores (0.5) or millicores ('500m'), got {value!r}"
                ) from None
        else:
            millis = decimal.Decimal(match["n"])
    if not millis.is_finite() or millis <= 0:
        raise ValueError(f"expected a CPU amount greater than zero, got {value!r}")
    return math.ceil(millis)


def _exact(value: float | int | str) -> decimal.Decimal:
    # Through str(): 4.03 cores is 4030 millicores, not float's 4030.000000000004.
    return decimal.Decimal(str(value).strip())


def memory_mb(value: int | str) -> int:
    """`256`, `"256Mi"` or `"1Gi"` → MiB (rounded up). Raises ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"expected memory as MiB (256) or '256Mi', '1Gi', got {value!r}")
    if isinstance(value, int):
        mib = float(value)
    else:
        match = _MEMORY.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected memory as MiB (256) or '256Mi', '1Gi', got {value!r}")
        unit = match["unit"]
        number = float(match["n"])
        mib = number if unit is None else number * _BYTES[unit] / 1024**2
    if mib <= 0:
        raise ValueError(f"expected a memory amount greater than zero, got {value!r}")
    return math.ceil(mib)
