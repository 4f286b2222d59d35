"""CPU and memory quantities as users write them, read into millicores and MiB."""

from __future__ import annotations

import pytest

from armillary.resources import quantity


@pytest.mark.parametrize(
    ("value", "millicores"),
    [
        (1, 1000),
        (2, 2000),
        (0.5, 500),
        (0.25, 250),
        (1.5, 1500),
        (0.0001, 1),  # rounded up: a request is never below what was asked
        ("500m", 500),
        ("1m", 1),
        ("2000m", 2000),
        (" 250m ", 250),
        ("0.5", 500),
        ("2", 2000),
    ],
)
def test_cpu_millicores(value: float | str, millicores: int) -> None:
    assert quantity.cpu_millicores(value) == millicores


@pytest.mark.parametrize(("value", "millicores"), [(4.03, 4030), ("16.1", 16100), (2.007, 2007)])
def test_cpu_with_exact_millicores_is_not_rounded_up_by_float_error(
    value: float | str, millicores: int
) -> None:
    assert quantity.cpu_millicores(value) == millicores


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "greater than zero"),
        (-1, "greater than zero"),
        (-0.5, "greater than zero"),
        ("0m", "greater than zero"),
        ("0", "greater than zero"),
        ("inf", "greater than zero"),
        ("nan", "greater than zero"),
        (float("inf"), "greater than zero"),
        ("lots", "expected CPU as cores (0.5) or millicores ('500m')"),
        ("", "expected CPU as cores (0.5) or millicores ('500m')"),
        ("500 m", "expected CPU as cores (0.5) or millicores ('500m')"),
        ("1.5m", "expected CPU as cores (0.5) or millicores ('500m')"),
        ("-500m", "expected CPU as cores (0.5) or millicores ('500m')"),
        ("500M", "expected CPU as cores (0.5) or millicores ('500m')"),
        (True, "expected CPU as cores (0.5) or millicores ('500m')"),
    ],
)
def test_cpu_millicores_refuses(value: float | str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        quantity.cpu_millicores(value)

    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (256, 256),
        (1, 1),
        ("256", 256),
        ("256Mi", 256),
        ("1Gi", 1024),
        ("1.5Gi", 1536),
        ("0.5Gi", 512),
        ("1Ti", 1024 * 1024),
        ("2048Ki", 2),
        ("1Ki", 1),  # rounded up
        ("512M", 489),  # 512,000,000 bytes = 488.28 MiB
        ("1G", 954),
        ("1T", 953_675),
        ("1000K", 1),
        (" 64Mi ", 64),
        ("1.1", 2),
    ],
)
def test_memory_mb(value: int | str, mib: int) -> None:
    assert quantity.memory_mb(value) == mib


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "greater than zero"),
        (-5, "greater than zero"),
        ("0Mi", "greater than zero"),
        ("0", "greater than zero"),
        ("1GB", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("1gi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("1Qi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("-1Mi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        (".5Gi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("1.Gi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("1 Gi", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("1e3", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        ("", "expected memory as MiB (256) or '256Mi', '1Gi'"),
        (True, "expected memory as MiB (256) or '256Mi', '1Gi'"),
    ],
)
def test_memory_mb_refuses(value: int | str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        quantity.memory_mb(value)

    assert expected in str(caught.value)
