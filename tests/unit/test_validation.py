"""Bad input through the loader: every problem is reported at its file, 1-based line and
field path, with a message that says what was expected there.

Each case marks the offending line with `# <-`, so the expected line is read from the
case itself rather than counted by hand.
"""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from armillary.errors import Invalid, TooLarge
from armillary.resources import loader

FILE = "x.yaml"
MARK = "# <-"

ORG = """\
apiVersion: armillary.dev/v1
kind: Org
metadata:
  name: acme
spec: {}
"""

STACK = """\
apiVersion: armillary.dev/v1
kind: Stack
metadata:
  name: web
spec:
  components:
"""

SCHEDULE = """\
apiVersion: armillary.dev/v1
kind: Schedule
metadata:
  name: nightly
spec:
  tenant: acme-support
  component: seed
"""


def stack(components: str) -> str:
    """A Stack whose `spec.components` is the given YAML list (written at column 0)."""
    return STACK + textwrap.indent(textwrap.dedent(components), "    ")


def release(*, name: str, version: str, tag: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: armillary.dev/v1
        kind: Release
        metadata:
          name: {name}
        spec:
          component: agent
          version: {version}
          git:
            tag: {tag}
            commit: 0a1b2c3d
          artifact:
            process:
              command: [python, -m, agent]
        """
    )


def marked_line(text: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if MARK in line]
    assert len(lines) == 1, "a case marks exactly one line"
    return lines[0]


def load_invalid(text: str) -> Invalid:
    with pytest.raises(Invalid) as caught:
        loader.load_text(text, file=FILE)
    return caught.value


CASES = [
    # --- YAML itself -------------------------------------------------------------------
    pytest.param(
        "a: [1, 2\nb: 3  # <-\n",
        "",
        "malformed YAML: while parsing a flow sequence; expected ',' or ']'",
        id="malformed-yaml",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Org\nkind: Org  # <-\nmetadata:\n  name: a\nspec: {}\n",
        "",
        'found duplicate key "kind"',
        id="duplicate-yaml-key",
    ),
    pytest.param(
        ORG + "---\n- just  # <-\n- a list\n",
        "",
        "expected a mapping with apiVersion, kind, metadata and spec",
        id="non-mapping-document",
    ),
    pytest.param(
        ORG + "---\njust a string  # <-\n",
        "",
        "expected a mapping with apiVersion, kind, metadata and spec",
        id="scalar-document",
    ),
    # --- the envelope ------------------------------------------------------------------
    pytest.param(
        ORG.replace("armillary.dev/v1", "armillary.dev/v2  # <-"),
        "apiVersion",
        "expected 'armillary.dev/v1', got 'armillary.dev/v2'",
        id="wrong-apiVersion",
    ),
    pytest.param(
        ORG.replace("apiVersion: armillary.dev/v1\nkind: Org\n", "kind: Org  # <-\n"),
        "apiVersion",
        "expected 'armillary.dev/v1', got nothing",
        id="missing-apiVersion",
    ),
    pytest.param(
        ORG.replace("kind: Org", "kind: Pod  # <-"),
        "kind",
        "unknown kind 'Pod'; expected one of Org, Stack, Release, Secret, Cluster, Tenant, Schedule, WebhookSource",
        id="unknown-kind",
    ),
    pytest.param(
        ORG + "extra: 1  # <-\n",
        "extra",
        "unknown field 'extra'; expected one of: apiVersion, kind, metadata, spec, status",
        id="unknown-field-top-level",
    ),
    pytest.param(
        ORG.replace("  name: acme\n", "  name: acme\n  namespace: default  # <-\n"),
        "metadata.namespace",
        "unknown field 'namespace'; expected one of: name, labels, annotations, resourceVersion",
        id="unknown-field-in-metadata",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              restart:
                polcy: always  # <-
            """
        ),
        "spec.components[0].restart.polcy",
        "unknown field 'polcy'; expected one of: policy, backoff_initial_s, backoff_max_s, "
        "crash_loop_after (did you mean 'policy'?)",
        id="unknown-field-deep-in-spec",
    ),
    pytest.param(
        stack(
            """\
            - name: db
              command: [postgres]
              on_node_lost: never  # <-
            """
        ),
        "spec.components[0].on_node_lost",
        "'replace' or 'wait'",
        id="on-node-lost-not-replace-or-wait",
    ),
    pytest.param(
        ORG.replace("name: acme", "name: Acme  # <-"),
        "metadata.name",
        "expected a DNS-1123 name (a-z, 0-9 and '-'",
        id="name-uppercase",
    ),
    pytest.param(
        ORG.replace("name: acme", "name: acme.corp  # <-"),
        "metadata.name",
        "expected a DNS-1123 name (a-z, 0-9 and '-'",
        id="name-with-dot",
    ),
    pytest.param(
        ORG.replace("name: acme", f"name: {'a' * 64}  # <-"),
        "metadata.name",
        "at most 63 characters",
        id="name-too-long",
    ),
    pytest.param(
        ORG.replace("name: acme", 'name: "acme\\n"  # <-'),
        "metadata.name",
        "expected a DNS-1123 name",
        id="name-trailing-newline",
    ),
    pytest.param(
        ORG.replace("  name: acme\n", "  name: acme\n  labels:\n    bad key: x  # <-\n"),
        'metadata.labels["bad key"]',
        "expected a label key like 'team' or 'example.com/team'",
        id="label-key",
    ),
    pytest.param(
        ORG.replace("  name: acme\n", "  name: acme\n  labels:\n    team: two words  # <-\n"),
        "metadata.labels.team",
        "expected a label value of at most 63 letters, digits, '-', '_' or '.'",
        id="label-value",
    ),
    # --- Stack: fields -----------------------------------------------------------------
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
            - name: worker
              command: [python, -m, worker]
              replicas: three  # <-
            """
        ),
        "spec.components[1].replicas",
        "input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
            - name: worker
              command: [python, -m, worker]
              replicas: -1  # <-
            """
        ),
        "spec.components[1].replicas",
        "greater than or equal to 0, got -1",
        id="negative-replicas",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              resources:
                cpu: true  # <-
            """
        ),
        "spec.components[0].resources.cpu",
        ("expected a quantity such as 0.5, '500m'", "got True"),
        id="cpu-boolean",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              replicas: true  # <-
            """
        ),
        "spec.components[0].replicas",
        "input should be a valid integer, got true",
        id="replicas-boolean",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              resources:
                cpu: lots  # <-
            """
        ),
        "spec.components[0].resources.cpu",
        "expected CPU as cores (0.5) or millicores ('500m'), got 'lots'",
        id="bad-cpu",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              resources:
                memory: 1Qi  # <-
            """
        ),
        "spec.components[0].resources.memory",
        "expected memory as MiB (256) or '256Mi', '1Gi', got '1Qi'",
        id="bad-memory",
    ),
    pytest.param(
        stack(
            f"""\
            - name: {"a" * 49}  # <-
              command: [python, -m, agent]
            """
        ),
        "spec.components[0].name",
        "expected a component name of at most 48 characters",
        id="component-name-too-long",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              env:
                1BAD: x  # <-
            """
        ),
        'spec.components[0].env["1BAD"]',
        "expected an environment variable name like LOG_LEVEL, got '1BAD'",
        id="env-var-name",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              env:
                "LOG_LEVEL\\n": x  # <-
            """
        ),
        'spec.components[0].env["LOG_LEVEL\\n"]',
        "expected an environment variable name",
        id="env-var-name-trailing-newline",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              release: agent@v1.4  # <-
            """
        ),
        "spec.components[0].release",
        "expected a semantic version MAJOR.MINOR.PATCH",
        id="release-ref-bad-semver",
    ),
    pytest.param(
        stack(
            """\
            - name: agent  # <-
              release: agent@1.4.0
              command: [python, -m, agent]
            """
        ),
        "spec.components[0]",
        "expected exactly one of release, command or image (got release, command)",
        id="command-and-release",
    ),
    pytest.param(
        stack(
            """\
            - name: agent  # <-
              replicas: 2
            """
        ),
        "spec.components[0]",
        "expected exactly one of release, command or image (got none)",
        id="neither-command-nor-release",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              health_check:  # <-
                http: {}
                tcp: {}
            """
        ),
        "spec.components[0].health_check",
        "expected exactly one of http, tcp or exec",
        id="health-check-two-probes",
    ),
    # --- Stack: rules across fields and components --------------------------------------
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              ports:
                - name: web
              health_check:
                http:
                  port: admin  # <-
            """
        ),
        "spec.components[0].health_check.http.port",
        "unknown port 'admin'; expected one of ['web'] or a number",
        id="health-check-unknown-port",
    ),
    pytest.param(
        stack(
            """\
            - name: seed
              type: job
              command: [python, -m, seed]
              replicas: 2  # <-
            """
        ),
        "spec.components[0].replicas",
        "jobs run once per tenant; replicas is for services",
        id="job-with-replicas",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
            - name: agent  # <-
              command: [python, -m, worker]
            """
        ),
        "spec.components[1].name",
        "duplicate component name 'agent' (first used by components[0])",
        id="duplicate-component-names",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              depends_on: [db]  # <-
            """
        ),
        "spec.components[0].depends_on[0]",
        "unknown component 'db'; expected one of ['agent']",
        id="depends-on-unknown",
    ),
    pytest.param(
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              depends_on:
                - agent  # <-
            """
        ),
        "spec.components[0].depends_on[0]",
        "a component cannot depend on itself",
        id="depends-on-self",
    ),
    pytest.param(
        stack(
            """\
            - name: a
              command: [a]
              depends_on: [b]
            - name: b
              command: [b]
              depends_on: [a]  # <-
            """
        ),
        "spec.components[1].depends_on[0]",
        "depends_on cycle: a -> b -> a",
        id="depends-on-cycle-of-2",
    ),
    pytest.param(
        stack(
            """\
            - name: a
              command: [a]
              depends_on: [b]
            - name: b
              command: [b]
              depends_on: [c]
            - name: c
              command: [c]
              depends_on: [a]  # <-
            """
        ),
        "spec.components[2].depends_on[0]",
        "depends_on cycle: a -> b -> c -> a",
        id="depends-on-cycle-of-3",
    ),
    # --- Release -----------------------------------------------------------------------
    pytest.param(
        release(name="agent", version="v1.4.0  # <-", tag="agent/v1.4.0"),
        "spec.version",
        (
            "expected a semantic version MAJOR.MINOR.PATCH[-PRERELEASE] such as 1.4.0 "
            "(no leading 'v', no build metadata), got \"v1.4.0\"",
            "release.schema.json#/properties/spec/properties/version/pattern",
        ),
        id="release-bad-semver",
    ),
    pytest.param(
        release(name="agent", version="1.4.0+build.5  # <-", tag="agent/v1.4.0"),
        "spec.version",
        "release.schema.json#/properties/spec/properties/version/pattern",
        id="release-build-metadata",
    ),
    pytest.param(
        release(name="agent  # <-", version="1.4.0", tag="agent/v1.4.0"),
        "metadata.name",
        "expected 'agent-1.4.0' (a Release is named <component>-<version>), got 'agent'",
        id="release-name-not-component-version",
    ),
    pytest.param(
        release(name="agent-1.4.0", version="1.4.0", tag="v1.4.0  # <-"),
        "spec.git.tag",
        "expected the tag 'agent/v1.4.0', got 'v1.4.0'",
        id="release-git-tag-mismatch",
    ),
    # --- Schedule ----------------------------------------------------------------------
    pytest.param(
        SCHEDULE + "  cron: '61 * * * *'  # <-\n",
        "spec.cron",
        "expected a valid cron expression (minute 0-59; hour 0-23;",
        id="cron-minute-61",
    ),
    pytest.param(
        SCHEDULE + "  cron: '0 * * * * *'  # <-\n",
        "spec.cron",
        ("expected 5 cron fields (minute 0-59; hour 0-23; day of month 1-31;", "or an @-macro"),
        id="cron-six-fields",
    ),
    pytest.param(
        SCHEDULE + "  cron: '@fortnightly'  # <-\n",
        "spec.cron",
        "expected one of @annually, @daily, @hourly, @midnight, @monthly, @weekly, @yearly",
        id="cron-unknown-macro",
    ),
    pytest.param(
        SCHEDULE + "  cron: '@daily'\n  time_zone: Mars/Olympus_Mons  # <-\n",
        "spec.time_zone",
        "expected an IANA time zone such as 'UTC' or 'Europe/Paris', got 'Mars/Olympus_Mons'",
        id="unknown-time-zone",
    ),
    pytest.param(
        SCHEDULE + "  cron: '@daily'\n  time_zone: Europe  # <-\n",
        "spec.time_zone",
        "expected an IANA time zone",
        id="time-zone-is-a-tzdata-directory",
    ),
    # --- WebhookSource -----------------------------------------------------------------
    pytest.param(
        textwrap.dedent(
            """\
            apiVersion: armillary.dev/v1
            kind: WebhookSource
            metadata:
              name: hooks
            spec:  # <-
              type: generic-hmac
              secrets:
                - name: hooks-signing
              routing:
                key_space: hooks
            """
        ),
        "spec.hmac",
        "type generic-hmac needs hmac: {header, algorithm, encoding}",
        id="generic-hmac-without-hmac",
    ),
    # --- Cluster, and where a tenant runs ----------------------------------------------
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Cluster\nmetadata:\n  name: c\n"
        "spec:  # <-\n  domain: apps.example.com\n",
        "spec.kubeconfig",
        "say how to reach the cluster: a kubeconfig in a Secret",
        id="cluster-unreachable-by-nothing",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Cluster\nmetadata:\n  name: c\n"
        "spec:\n  kubeconfig: {secret: k}\n  in_cluster: true  # <-\n",
        "spec.in_cluster",
        "give either kubeconfig or in_cluster: true, not both",
        id="cluster-reached-two-ways",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Cluster\nmetadata:\n  name: c\n"
        "spec:\n  in_cluster: true\n  domain: Bad_Domain  # <-\n",
        "spec.domain",
        "expected a DNS domain like 'apps.example.com'",
        id="cluster-domain",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Tenant\nmetadata:\n  name: t\n"
        "spec:\n  org: a\n  stack: s\n  runtime: docker  # <-\n",
        "spec.runtime",
        "input should be 'nodes'",
        id="tenant-runtime",
    ),
]


@pytest.mark.parametrize(("text", "path", "expected"), CASES)
def test_one_problem_is_reported_at_its_file_line_and_path(
    text: str, path: str, expected: str | tuple[str, ...]
) -> None:
    error = load_invalid(text)

    assert type(error) is Invalid
    assert [issue.path for issue in error.issues] == [path]
    [issue] = error.issues
    assert (issue.file, issue.line) == (FILE, marked_line(text))
    for fragment in (expected,) if isinstance(expected, str) else expected:
        assert fragment in issue.message
    assert str(issue).startswith(f"{FILE}:{issue.line}: ")


def test_release_with_wrong_name_and_tag_reports_both() -> None:
    text = release(name="agent", version="1.4.0", tag="v1.4.0")

    error = load_invalid(text)

    assert {(i.path, i.line) for i in error.issues} == {("metadata.name", 4), ("spec.git.tag", 9)}


def test_a_valid_release_loads() -> None:
    [loaded] = loader.load_text(
        release(name="agent-1.4.0", version="1.4.0", tag="agent/v1.4.0"), file=FILE
    )

    assert loaded.resource.metadata.name == "agent-1.4.0"


def test_two_versions_cannot_share_a_release_name() -> None:
    accepted = []
    for version in ("1.0.0-RC.1", "1.0.0-rc.1"):
        text = release(name="agent-1.0.0-rc.1", version=version, tag=f"agent/v{version}")
        try:
            loader.load_text(text, file=FILE)
        except Invalid:
            continue
        accepted.append(version)

    assert len(accepted) <= 1, f"{accepted} are all named agent-1.0.0-rc.1"


def test_duplicate_name_inside_a_cycle_is_reported_not_raised() -> None:
    text = stack(
        """\
        - name: b
          command: [b]
          depends_on: [a]
        - name: a
          command: [a]
        - name: a
          command: [a]
          depends_on: [b]
        """
    )

    error = load_invalid(text)

    assert "spec.components[2].name" in [i.path for i in error.issues]


def test_user_text_in_a_message_does_not_make_it_too_large() -> None:
    # Regression: TooLarge was once decided by searching messages for "limit is".
    error = load_invalid(ORG.replace("name: acme", "name: over the limit is bad"))

    assert type(error) is Invalid


def test_several_problems_in_one_file_are_all_reported() -> None:
    text = (
        stack(
            """\
            - name: agent
              command: [python, -m, agent]
              replicas: -1
              colour: blue
            """
        )
        + "---\n"
        + ORG
        + "---\n"
        + SCHEDULE
        + "  cron: '61 * * * *'\n"
    )

    error = load_invalid(text)

    assert [(i.file, i.line, i.path) for i in error.issues] == [
        (FILE, 9, "spec.components[0].replicas"),
        (FILE, 10, "spec.components[0].colour"),
        (FILE, 25, "spec.cron"),
    ]


def test_document_over_one_mebibyte_is_too_large() -> None:
    text = ORG.replace("  name: acme\n", f"  name: acme\n  annotations:\n    big: {'x' * 2**20}\n")

    with pytest.raises(TooLarge) as caught:
        loader.load_text(text, file=FILE)

    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.path) == (FILE, 1, "")
    assert "the limit is 1048576 bytes" in issue.message
    assert isinstance(caught.value, Invalid)


def billion_laughs(levels: int, *, leaf: str = "lol") -> str:
    lines = [*ORG.splitlines()[:-1], "spec:", f"  l0: &l0 {leaf}"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_fails_fast_as_too_large() -> None:
    # 10**30 values if expanded: finishing at all shows the expansion was cut short.
    with pytest.raises(TooLarge) as caught:
        loader.load_text(billion_laughs(30), file=FILE)

    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.path) == (FILE, 1, "")
    assert "expands to more than" in issue.message


def test_alias_bomb_of_long_strings_is_refused_without_expanding_it() -> None:
    text = billion_laughs(3, leaf="x" * 20_000)  # 1,000 aliases of 20 KB: 20 MB expanded

    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            loader.load_text(text, file=FILE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * 2**20


def test_valid_multi_document_file_loads_every_document_at_its_line() -> None:
    text = (
        "# tenants of acme\n"
        + ORG
        + "---\n---\n# nothing here\n---\n"
        + stack("- name: agent\n  command: [python, -m, agent]\n")
        + "...\n---\n"
        + '{"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "globex"},'
        + ' "spec": {}}\n'
    )

    loaded = loader.load_text(text, file=FILE)

    assert [(d.resource.kind, d.resource.metadata.name, d.file, d.line) for d in loaded] == [
        ("Org", "acme", FILE, 2),
        ("Stack", "web", FILE, 11),
        ("Org", "globex", FILE, 21),
    ]
    assert loaded[1].raw["spec"] == {
        "components": [{"name": "agent", "command": ["python", "-m", "agent"]}]
    }


def test_empty_documents_are_skipped() -> None:
    assert loader.load_text("---\n---\n# only a comment\n---\n", file=FILE) == []


# --- load_paths ---------------------------------------------------------------------------


def org(name: str) -> str:
    return ORG.replace("name: acme", f"name: {name}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "b.yaml").write_text(org("b"))
    (tmp_path / "a.yml").write_text(org("a"))
    (tmp_path / "c.json").write_text(
        '{"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "c"}, "spec": {}}'
    )
    (tmp_path / ".hidden.yaml").write_text(org("hidden"))
    (tmp_path / "notes.txt").write_text("not a resource")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.yaml").write_text(org("d"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "e.yaml").write_text(org("e"))
    return tmp_path


def test_directory_reads_yaml_yml_json_sorted_skipping_hidden(tree: Path) -> None:
    loaded = loader.load_paths([str(tree)])

    assert [(Path(d.file).name, d.resource.metadata.name) for d in loaded] == [
        ("a.yml", "a"),
        ("b.yaml", "b"),
        ("c.json", "c"),
    ]


def test_directory_recursive_descends_but_not_into_hidden_directories(tree: Path) -> None:
    loaded = loader.load_paths([str(tree)], recursive=True)

    assert [d.resource.metadata.name for d in loaded] == ["a", "b", "c", "d"]
    assert loaded[-1].file == str(tree / "sub" / "d.yaml")


def test_problems_in_several_files_are_all_reported_by_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(org("Bad"))
    (tmp_path / "b.yaml").write_text(org("good"))
    (tmp_path / "c.yaml").write_text("a: [1\n")

    with pytest.raises(Invalid) as caught:
        loader.load_paths([str(tmp_path)])

    assert [(i.file, i.line, i.path) for i in caught.value.issues] == [
        (str(tmp_path / "a.yaml"), 4, "metadata.name"),
        (str(tmp_path / "c.yaml"), 2, ""),
    ]


def test_missing_path_gives_an_issue_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")

    with pytest.raises(Invalid) as caught:
        loader.load_paths([missing])

    [issue] = caught.value.issues
    assert issue.file == missing
    assert issue.message == "no such file or directory"
    assert str(issue).startswith(missing)


def test_directory_without_resource_files_is_an_issue(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# nothing")

    with pytest.raises(Invalid) as caught:
        loader.load_paths([str(tmp_path)])

    [issue] = caught.value.issues
    assert (issue.file, issue.message) == (str(tmp_path), "no .yaml, .yml or .json files here")


def test_file_that_is_not_utf8_is_an_issue(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))

    with pytest.raises(Invalid) as caught:
        loader.load_paths([str(path)])

    [issue] = caught.value.issues
    assert issue.file == str(path)
    assert "UTF-8" in issue.message


def test_file_over_the_size_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("#" * (loader.MAX_FILE_BYTES + 1))

    with pytest.raises(TooLarge) as caught:
        loader.load_paths([str(path)])

    [issue] = caught.value.issues
    assert issue.file == str(path)
    assert f"the limit is {loader.MAX_FILE_BYTES} bytes" in issue.message


def test_dash_reads_stdin() -> None:
    [loaded] = loader.load_paths(["-"], stdin=org("piped"))

    assert (loaded.file, loaded.line, loaded.resource.metadata.name) == ("<stdin>", 1, "piped")
