"""Strict YAML/JSON loading: every trick that ``yaml.safe_load`` lets through is refused
with the file and the line, and plain documents still load."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pyhall_mcp._yaml import MAX_DEPTH, MAX_DOCUMENT_BYTES, load_document, loads_json, loads_yaml
from pyhall_mcp.errors import ConfigError

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

# (name, document, expected words in the message, 1-based line of the problem)
REFUSED = [
    ("billion-laughs", BILLION_LAUGHS, "anchors are not allowed", 1),
    ("alias", "a: x\nb: *a\n", "aliases are not allowed", 2),
    ("duplicate-key", "rules: []\nversion: 1\nrules: [x]\n", "duplicate key 'rules'", 3),
    (
        "python-apply",
        'ok: 1\nx: !!python/object/apply:os.system ["touch /tmp/pwned"]\n',
        "python/object/apply",
        2,
    ),
    ("python-name", "x: !!python/name:os.system\n", "python/name", 1),
    ("custom-tag", "a: 1\nb: 2\nc: !include secrets.yaml\n", "tag !include is not allowed", 3),
    ("merge-key", "base: {a: 1}\nx:\n  <<: {a: 2}\n  b: 3\n", "merge keys (<<)", 3),
    ("int-key", "a: 1\n1: b\n", "keys must be strings", 2),
    ("null-key", "a: 1\n~: b\n", "keys must be strings", 2),
    ("bool-key", "a: 1\ntrue: b\n", "keys must be strings", 2),
    ("complex-key", "a: 1\n? [x, y]\n: c\n", "keys must be strings", 2),
    ("nested-dup", "a:\n  b: 1\n  c: 2\n  b: 3\n", "duplicate key 'b'", 4),
]


@pytest.mark.parametrize(("name", "text", "words", "line"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_documents_name_file_and_line(
    tmp_path: Path, name: str, text: str, words: str, line: int
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_document(path)
    err = info.value
    assert words in err.message
    assert err.file == str(path)
    assert err.location == f"line {line}"
    assert str(path) in str(err) and f"line {line}" in str(err)


def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError):
        load_document(path)
    assert not marker.exists()


def test_billion_laughs_is_refused_quickly_from_a_string() -> None:
    with pytest.raises(ConfigError, match="anchors are not allowed"):
        loads_yaml(BILLION_LAUGHS, source="bomb.yaml")


def test_yaml_1_1_booleans_stay_strings() -> None:
    doc = loads_yaml("a: NO\nb: off\nc: yes\nd: On\ne: n\nf: true\ng: False\n")
    assert doc == {"a": "NO", "b": "off", "c": "yes", "d": "On", "e": "n", "f": True, "g": False}


def test_norway_problem_country_codes_survive() -> None:
    assert loads_yaml("countries: [GB, NO, SE]\n") == {"countries": ["GB", "NO", "SE"]}


def test_plain_document_loads_with_json_types(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("rules:\n  - rule_id: r1\n    match: {env: {in: [dev, prod]}}\n    n: 3\n")
    assert load_document(path) == {
        "rules": [{"rule_id": "r1", "match": {"env": {"in": ["dev", "prod"]}}, "n": 3}]
    }


def test_oversize_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * (MAX_DOCUMENT_BYTES + 1) + "\n")
    with pytest.raises(ConfigError) as info:
        load_document(path)
    assert info.value.file == str(path)
    assert "larger than" in info.value.message


def test_oversize_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        loads_yaml("a: " + "é" * (MAX_DOCUMENT_BYTES // 2 + 1), source="s.yaml")


def test_json_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{"rules": [], "rules": [1]}')
    with pytest.raises(ConfigError) as info:
        load_document(path)
    assert "duplicate key 'rules'" in info.value.message
    assert info.value.file == str(path)


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{\n"rules": [\n,]\n}')
    with pytest.raises(ConfigError) as info:
        load_document(path)
    assert info.value.location == "line 3"


def test_json_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        loads_json("[" * 100_000 + "]" * 100_000, source="deep.json")


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_document(tmp_path / "absent.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: \xe9\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_document(path)


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        loads_yaml("a: 1\nb: [1, 2\nc: 3\n", source="broken.yaml")
    assert info.value.file == "broken.yaml"
    assert info.value.location is not None and info.value.location.startswith("line ")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nx: !!set {a, b}\n", 2),
        ("x: !!binary aGVsbG8=\n", 1),
        ("x: !!timestamp 2001-12-14\n", 1),
        ("x: !!omap [a: 1]\n", 1),
        ("x: !!pairs [a: 1]\n", 1),
    ],
)
def test_non_json_yaml_types_are_refused(text: str, line: int) -> None:
    # Sets, bytes and dates are not JSON values: they would only fail later,
    # far from the file, when a receipt is canonicalised.
    with pytest.raises(ConfigError) as info:
        loads_yaml(text, source="types.yaml")
    assert "is not allowed" in info.value.message
    assert info.value.location == f"line {line}"


def test_dates_stay_strings() -> None:
    # YAML 1.1 turns an unquoted date into a datetime.date; YAML 1.2 keeps text.
    assert loads_yaml("not_after: 2026-01-01\nat: 2001-12-14t21:59:43.10-05:00\n") == {
        "not_after": "2026-01-01",
        "at": "2001-12-14t21:59:43.10-05:00",
    }


@pytest.mark.parametrize(
    "text",
    [
        "x: " + "[" * 400_000 + "]" * 400_000,  # libyaml's composer crashed the process
        "x: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "".join(" " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + " " * 80 + "v: 1\n",
    ],
    ids=["flow-lists", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"nests deeper than {MAX_DEPTH} levels"):
        loads_yaml(text, source="deep.yaml")
    assert time.perf_counter() - started < 5


def test_nesting_up_to_the_limit_loads() -> None:
    # one mapping and MAX_DEPTH - 1 lists: exactly at the limit
    value = loads_yaml("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))["x"]
    depth = 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH - 1
    with pytest.raises(ConfigError, match="nests deeper"):
        loads_json('{"x": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", source="deep.json")


@pytest.mark.timeout(10)
def test_devices_pipes_and_directories_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # size 0 in stat, endless to read
    os.mkfifo(tmp_path / "fifo.yaml")  # nothing ever writes: a read would block forever
    (tmp_path / "dir.yaml").mkdir()
    for name in ("zero.yaml", "fifo.yaml", "dir.yaml"):
        with pytest.raises(ConfigError, match="not a regular file") as info:
            load_document(tmp_path / name)
        assert info.value.file == str(tmp_path / name)
