"""`armillary render -f DIR --target kubernetes` through the real CLI: no server,
the goldens of tests/unit/golden/kubernetes, refusals at file:line and path (exit 4),
bad flags as usage errors (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cli import run

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "unit" / "golden" / "kubernetes"
NO_SERVER = {"ARMILLARY_URL": "http://127.0.0.1:9", "ARMILLARY_TOKEN": None}


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # file names in messages are relative, as users type them


def render(*args: str) -> tuple[int, str, str]:
    return run("render", *args, env=NO_SERVER)


def test_render_prints_the_golden_yaml_without_a_server() -> None:
    code, out, err = render("-f", "examples/kubernetes", "--target", "kubernetes")
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "every-field.yaml").read_text()


def test_render_json_with_httproute_and_storage_flags_prints_the_golden_json() -> None:
    code, out, err = render(
        "-f",
        "examples/kubernetes",
        "--target",
        "kubernetes",
        "-o",
        "json",
        "--ingress",
        "httproute",
        "--domain",
        "apps.initech.example",
        "--gateway",
        "gateways/public",
        "--storage-class",
        "fast-ssd",
        "--access-mode",
        "ReadWriteMany",
        "--data-size",
        "20Gi",
    )
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "every-field-httproute.json").read_text()


def test_the_quickstart_is_refused_naming_each_process_only_component() -> None:
    code, out, err = render("-f", "examples/quickstart", "--target", "kubernetes")
    assert code == 4
    assert out == ""
    path = GOLDEN / "quickstart.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(err)
    assert err == path.read_text()


def test_tenant_selects_one_tenant_and_an_unknown_one_is_a_usage_error(tmp_path: Path) -> None:
    code, out, _ = render(
        "-f", "examples/kubernetes", "--target", "kubernetes", "-t", "initech-support"
    )
    assert code == 0 and "armillary.dev/tenant: initech-support" in out
    code, out, err = render("-f", "examples/kubernetes", "--target", "kubernetes", "-t", "nobody")
    assert code == 2
    assert "no tenant nobody in the files" in err and "initech-support" in err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "Missing option '--target'"),
        (("--target", "nomad"), "--target"),
        (("--target", "kubernetes", "-o", "table"), "'table' is not one of"),
        (("--target", "kubernetes", "--ingress", "gateway"), "--ingress"),
        (("--target", "kubernetes", "--domain", "Bad_Domain"), "--domain"),
        (("--target", "kubernetes", "--gateway", "public"), "NAMESPACE/NAME"),
        (("--target", "kubernetes", "--data-size", "1GB"), "1Gi or 500Mi"),
        (("--target", "kubernetes", "--access-mode", "rwo"), "--access-mode"),
    ],
)
def test_bad_flags_are_usage_errors(flags: tuple[str, ...], expected: str) -> None:
    code, out, err = render("-f", "examples/kubernetes", *flags)
    assert code == 2
    assert out == ""
    assert expected in err


def test_an_invalid_kubernetes_name_is_refused_at_its_file_and_path(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").write_text(
        "apiVersion: armillary.dev/v1\n"
        "kind: Org\n"
        "metadata: {name: acme}\n"
        "spec: {}\n"
        "---\n"
        "apiVersion: armillary.dev/v1\n"
        "kind: Tenant\n"
        "metadata: {name: acme-support}\n"
        "spec: {org: acme, stack: s}\n"
        "---\n"
        "apiVersion: armillary.dev/v1\n"
        "kind: Stack\n"
        "metadata: {name: s}\n"
        "spec:\n"
        "  components:\n"
        "    - {name: 9lives, image: x/y:1, ports: [{name: http}]}\n"
    )
    code, out, err = render("-f", str(tmp_path), "--target", "kubernetes")
    assert code == 4 and out == ""
    assert f"{tmp_path / 'stack.yaml'}:16: Stack/s spec.components[0].name:" in err  # its line
    assert "DNS-1035" in err


def test_a_tenant_whose_stack_is_missing_is_refused_and_others_still_render(
    tmp_path: Path,
) -> None:
    for name in ("stack.yaml", "release.yaml", "tenants.yaml"):
        (tmp_path / name).write_text((ROOT / "examples" / "kubernetes" / name).read_text())
    (tmp_path / "lost.yaml").write_text(
        "apiVersion: armillary.dev/v1\n"
        "kind: Tenant\n"
        "metadata: {name: lost}\n"
        "spec: {org: initech, stack: nowhere}\n"
    )
    code, out, err = render("-f", str(tmp_path), "--target", "kubernetes")
    assert code == 4 and out == ""
    assert (
        f"{tmp_path / 'lost.yaml'}:4: Tenant/lost spec.stack: Stack 'nowhere' is not among" in err
    )
    code, out, err = render("-f", str(tmp_path), "--target", "kubernetes", "-t", "initech-support")
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "every-field.yaml").read_text()
