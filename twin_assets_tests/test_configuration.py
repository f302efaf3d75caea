"""One configuration path (environment -> twin_assets/defs/resources.py -> resource fields ->
plain settings), and `twin` errors a user can act on: one line on stderr, a non-zero status."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from resources.crawler import CrawlConfig, CrawlerResource
from resources.tracking import WandbResource
from twin_assets.authors.registry import RegistryError
from twin_assets.cli import main
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.defs.resources import (
    CRAWL_ENV,
    ConfigurationError,
    build_resources,
    crawl_settings_from_env,
)
from twin_assets.paths import PROJECT_ROOT
from twin_assets_tests.conftest import free_port

# Modules that take their configuration as fields/arguments and never touch os.environ.
NO_ENVIRONMENT = [
    "resources/crawler.py",
    "resources/tracking.py",
    "resources/embedder.py",
    "resources/author_registry.py",
    "twin_assets/authors/registry.py",
    "twin_assets/crawling/settings.py",
]


# --- the crawler's settings: one model, every field configurable -------------------------------


def test_every_crawl_setting_has_one_variable_and_is_dagster_config():
    assert sorted(CRAWL_ENV.values()) == sorted(CrawlSettings.model_fields)
    assert CrawlConfig.model_fields.keys() == CrawlSettings.model_fields.keys()
    assert CrawlerResource().settings() == CrawlSettings()


def test_crawl_settings_from_env_parses_every_kind_of_field():
    settings = crawl_settings_from_env(
        {
            "TWIN_CRAWL_ALLOW_HOSTS": "127.0.0.1, 10.0.0.0/8,",
            "TWIN_CRAWL_ALLOW_LOCAL": "1",
            "TWIN_CRAWL_BROWSER": "never",
            "TWIN_CRAWL_BLOCK_HEAVY_RESOURCES": "false",
            "TWIN_CRAWL_MAX_REDIRECTS": "0",
            "TWIN_CRAWL_MAX_LISTING_ITEMS": "50",
            "TWIN_CRAWL_TIMEOUT_S": "7.5",
            "TWIN_GITHUB_API": "http://127.0.0.1:9/api",
            "TWIN_CRAWL_USER_AGENT": "",  # empty: the default, as if unset
        }
    )
    assert settings.allow_hosts == ["127.0.0.1", "10.0.0.0/8"] and settings.allow_local_sources
    assert settings.browser_mode == "never" and settings.block_heavy_resources is False
    assert (settings.max_redirects, settings.max_listing_items, settings.page_timeout_s) == (0, 50, 7.5)
    assert settings.github_api_base == "http://127.0.0.1:9/api"
    assert settings.user_agent == CrawlSettings().user_agent
    resource = CrawlerResource.from_settings(settings)
    assert resource.settings() == settings


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("TWIN_CRAWL_MAX_RETRIES", "two", "valid integer"),
        ("TWIN_CRAWL_BROWSER", "sometimes", "'auto', 'always' or 'never'"),
        ("TWIN_CRAWL_TIMEOUT_S", "-1", "greater than 0"),
    ],
)
def test_invalid_crawl_variables_are_named(variable, value, why):
    with pytest.raises(ConfigurationError, match=f"{variable}='{value}' is not valid: .*{why}"):
        crawl_settings_from_env({variable: value})


def test_crawl_settings_are_launchpad_config():
    """Any CrawlSettings field can be set per run, e.g. one the environment leaves alone."""

    @dg.asset
    def redirects(crawler: CrawlerResource) -> int:
        return crawler.settings().max_redirects

    result = dg.materialize(
        [redirects],
        resources={"crawler": CrawlerResource.configure_at_launch()},
        run_config={"resources": {"crawler": {"config": {"crawl": {"max_redirects": 9}}}}},
        instance=dg.DagsterInstance.ephemeral(),  # never whatever DAGSTER_HOME another test left
    )
    assert result.output_for_node("redirects") == 9


# --- build_resources: the one place the environment is read ------------------------------------


def test_build_resources_reads_only_the_given_environment(tmp_path):
    environ = {
        "TWIN_DATA_DIR": str(tmp_path),
        "TWIN_AUTHORS_FILE": "/srv/authors.yaml",
        "TWIN_SAMPLE_SITE_URL": "http://127.0.0.1:1234",
        "TWIN_CRAWL_MAX_LISTING_ITEMS": "30",
        "TWIN_EMBEDDING_BATCH": "8",
        "HF_HUB_OFFLINE": "0",
        "TWIN_MONGO_TIMEOUT_MS": "500",
        "WANDB_API_KEY": "k" * 40,
        "TWIN_WANDB_ENABLED": "no",
    }
    r = build_resources(environ)
    assert r["authors"].path == "/srv/authors.yaml"
    assert r["authors"].placeholders == {
        "TWIN_DATA_DIR": str(tmp_path),
        "TWIN_SAMPLE_SITE_URL": "http://127.0.0.1:1234",
    }
    assert r["crawler"].settings().max_listing_items == 30
    assert (r["embedder"].batch_size, r["embedder"].offline) == (8, False)
    assert r["warehouse"].embedded_data_dir == str(tmp_path / "mongo")
    assert r["warehouse"].server_selection_timeout_ms == 500
    assert r["wandb"].dir == str(tmp_path / "wandb") and r["wandb"].enabled is False
    assert r["wandb"].api_key == "k" * 40  # an explicit mapping cannot be an EnvVar


def test_defaults_and_secrets_from_the_process_environment(monkeypatch):
    # a shell that sourced scripts/env.sh exports TWIN_CRAWL_* and friends: defaults mean none
    for name in [n for n in os.environ if n.startswith("TWIN_")] + ["HF_HUB_OFFLINE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWIN_QDRANT_API_KEY", "qdrant-secret")
    r = build_resources()
    assert r["authors"].path == str(PROJECT_ROOT / "authors.yaml")
    assert r["embedder"].offline is True and r["crawler"].settings() == CrawlSettings()
    assert r["llm"].api_key == ""
    assert isinstance(r["qdrant"].api_key, dg.EnvVar)  # resolved at run time, never shown


def test_invalid_numbers_name_their_variable():
    with pytest.raises(ConfigurationError, match="TWIN_MONGO_PORT='x' is not valid"):
        build_resources({"TWIN_MONGO_PORT": "x"})


def test_automation_interval_is_a_deployment_setting():
    from twin_assets.defs.jobs import automation_sensor
    from twin_assets.defs.resources import automation_interval_from_env

    assert automation_interval_from_env({}) == 30
    assert (
        automation_sensor(
            automation_interval_from_env({"TWIN_AUTOMATION_INTERVAL_S": "8"})
        ).minimum_interval_seconds
        == 8
    )
    for bad in ("0", "2", "ten", "99999"):
        with pytest.raises(ConfigurationError, match="TWIN_AUTOMATION_INTERVAL_S"):
            automation_interval_from_env({"TWIN_AUTOMATION_INTERVAL_S": bad})


def test_importing_the_definitions_reads_no_environment():
    """Invalid values only fail when the definitions are built, not when modules are imported."""
    env = {**os.environ, "TWIN_CRAWL_MAX_RETRIES": "two", "TWIN_MONGO_PORT": "x"}
    code = (
        "import twin_assets.definitions, twin_assets.defs.resources as r, twin_assets.cli\n"
        "try:\n    r.build_resources()\nexcept r.ConfigurationError as e:\n    print('late:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("late: TWIN_MONGO_PORT='x'")


@pytest.mark.parametrize("path", NO_ENVIRONMENT)
def test_resources_and_logic_never_touch_the_environment(path):
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    uses = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv"}
    ]
    assert uses == [], f"{path} touches the environment on lines {uses}"


def test_wandb_run_leaves_the_environment_alone(tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_SILENT", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    tracker = WandbResource(dir=str(tmp_path / "wandb"), mode="offline", project="twin-config-test")
    with tracker.start_run(name="r", group="g", job_type="test", config={"a": 1}) as run:
        run.log_summary({"loss": 0.5})
        assert run.mode == "offline" and Path(run.run_dir).is_relative_to(tmp_path / "wandb")
    after = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # wandb's own service handle
    assert after == before


# --- the CLI: one line on stderr, a non-zero status -------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "authors.yaml"
    path.write_text("authors:\n  - id: ola\n    full_name: Ola\n")
    monkeypatch.setenv("TWIN_AUTHORS_FILE", str(path))
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TWIN_DEBUG", raising=False)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("authors: [", "not valid YAML"),
        (
            "authors:\n  - id: Not A Slug\n    full_name: X\n",
            "authors[0].id: Value error, author id 'Not A Slug'",
        ),
        (
            "authors:\n  - id: a\n    full_name: A\n    links:\n      - url: ${TWIN_LLM_API_KEY}\n",
            "TWIN_LLM_API_KEY",
        ),
    ],
)
def test_cli_invalid_registry_is_one_line(registry, capsys, text, expected):
    registry.write_text(text)
    assert main(["authors", "list"]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"twin: author registry: {registry}: ") and expected in line


def test_cli_missing_registry(registry, capsys):
    registry.unlink()
    assert main(["authors", "sync"]) == 1
    assert _one_line_error(capsys).startswith(
        f"twin: author registry: cannot read author registry {registry}"
    )


def test_cli_debug_shows_the_traceback(registry, monkeypatch):
    registry.write_text("authors: [")
    with pytest.raises(RegistryError):
        main(["--debug", "authors", "list"])
    monkeypatch.setenv("TWIN_DEBUG", "1")
    with pytest.raises(RegistryError):
        main(["authors", "list"])


def test_cli_invalid_variable(registry, monkeypatch, capsys):
    monkeypatch.setenv("TWIN_CRAWL_MAX_RETRIES", "two")
    assert main(["authors", "list"]) == 1
    assert _one_line_error(capsys).startswith(
        "twin: configuration: TWIN_CRAWL_MAX_RETRIES='two' is not valid"
    )


def test_cli_purge_refusals(registry, monkeypatch, capsys):
    assert main(["authors", "purge", "ola", "--yes"]) == 1
    assert _one_line_error(capsys).startswith("twin: refused: author 'ola' is still in the registry")
    assert main(["authors", "purge", "Not/An/Id", "--yes"]) == 1
    assert (
        _one_line_error(capsys)
        == "twin: 'Not/An/Id' is not an author id (a lowercase slug: letters, digits, '-' or '_')"
    )
    assert main(["authors", "purge"]) == 1
    assert _one_line_error(capsys) == "twin: twin authors purge needs the author id"

    def no_terminal(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_terminal)  # e.g. run from a script without --yes
    assert main(["authors", "purge", "gone"]) == 1
    assert "not confirmed; nothing deleted" in _one_line_error(capsys)


def test_cli_unreachable_external_warehouse(registry, tmp_path, monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("TWIN_MONGO_URI", f"mongodb://twin:s3cret@127.0.0.1:{port}/")
    monkeypatch.setenv("TWIN_MONGO_TIMEOUT_MS", "300")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["authors", "sync"]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(
        f"twin: cannot reach the warehouse at 127.0.0.1:{port} (TWIN_MONGO_URI) within 0.3s"
    )
    assert "s3cret" not in line


def test_cli_dagster_home_unset(registry, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["authors", "sync"]) == 1
    line = _one_line_error(capsys)
    assert "DAGSTER_HOME is not set" in line and "scripts/env.sh" in line
