"""`twin`: the small command line around the pipeline (authors, embedded services, sample, service).

    twin authors list | sync         registry -> Dagster partitions + warehouse author documents
    twin authors purge ID [--yes]    forget an author removed from the registry (all their data)
    twin warehouse start | stop | status
    twin sample prepare | start | stop | serve
    twin gate AUTHOR                 the latest run for an author and the deploy gate's verdict
    twin keys create NAME [--author A ...]   a new API key for the service (shown once)
    twin keys list | revoke ID|PREFIX        keys (never the keys themselves); revoke one
    twin serve run | start | stop | status [--host H --port P]   the inference service
    twin runs reap | status          fail dead runs (a killed process) and free their pool slots
    twin stop                        stop everything the main command left running

A mistake the user can fix (an invalid registry or environment variable, a refused purge, an
unreachable warehouse, DAGSTER_HOME unset) is reported as one line on stderr with exit status
1; `twin --debug ...` (or TWIN_DEBUG=1) shows the traceback instead. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from twin_assets import processes
from twin_assets.paths import data_dir
from twin_assets.processes import ProcessInfo


class CliError(Exception):
    """A problem the user can act on; its message is the whole report."""


def user_error_message(exc: BaseException) -> str | None:
    """The one line to print for a user error, or None for a bug (which keeps its traceback)."""
    from resources.embedded_mongo import EmbeddedMongoError
    from twin_assets.authors.purge import AuthorStillRegistered, PurgeFailed
    from twin_assets.authors.registry import RegistryError
    from twin_assets.defs.resources import ConfigurationError
    from twin_assets.server import ServeError
    from twin_assets.serving.keys import KeyRequestError, KeyStoreUnavailable

    prefixes: list[tuple[type[BaseException], str]] = [
        (CliError, ""),
        (ServeError, "serve: "),
        (KeyRequestError, "keys: "),
        (KeyStoreUnavailable, "keys: "),
        (RegistryError, "author registry: "),
        (ConfigurationError, "configuration: "),
        (AuthorStillRegistered, "refused: "),
        (PurgeFailed, "purge incomplete (safe to re-run): "),
        (EmbeddedMongoError, "embedded warehouse: "),
    ]
    for kind, prefix in prefixes:
        if isinstance(exc, kind):
            return prefix + " ".join(str(exc).split())
    return None


def _resources() -> dict:
    from twin_assets.defs.resources import build_resources

    return build_resources()


def _warehouse():
    from dagster import EnvVar

    wh = _resources()["warehouse"]
    if isinstance(wh.uri, EnvVar):  # resolve for use outside a Dagster run
        wh = wh.model_copy(update={"uri": wh.uri.get_value()})
    return wh


def _store(warehouse):
    """The warehouse's document store; an external server that does not answer is a user error
    naming its hosts (never the full URI, which may hold a password)."""
    from pymongo.errors import ConfigurationError as MongoConfigurationError
    from pymongo.errors import ConnectionFailure

    try:
        return warehouse.get_store()
    except MongoConfigurationError as exc:
        if not warehouse.uri:
            raise
        raise CliError(f"TWIN_MONGO_URI is not a usable MongoDB URI ({type(exc).__name__})") from exc
    except ConnectionFailure as exc:
        if not warehouse.uri:
            raise
        raise CliError(
            f"cannot reach the warehouse at {_hosts(warehouse.uri)} (TWIN_MONGO_URI) within "
            f"{warehouse.server_selection_timeout_ms / 1000:g}s ({type(exc).__name__}); check that it "
            "is running and reachable, or unset TWIN_MONGO_URI to use the embedded one"
        ) from exc


def _hosts(uri: str) -> str:
    from pymongo.uri_parser import parse_uri

    try:
        return ", ".join(f"{host}:{port}" for host, port in parse_uri(uri, validate=False)["nodelist"])
    except Exception:
        return "the configured URI"


def _instance():
    """This Dagster instance; DAGSTER_HOME unset or missing is a user error."""
    import dagster as dg
    from dagster._core.errors import DagsterHomeNotSetError

    try:
        return dg.DagsterInstance.get()
    except (DagsterHomeNotSetError, dg.DagsterInvariantViolationError) as exc:
        first = str(exc).strip().split("\n")[0].strip()
        raise CliError(
            f"{first} Run `source scripts/env.sh` or point DAGSTER_HOME at the instance directory."
        ) from exc


def cmd_authors(args: argparse.Namespace) -> int:
    registry = _resources()["authors"]
    authors = registry.authors()
    if args.action == "purge":
        return _purge(args, authors)
    if args.action == "list":
        for a in authors:
            print(f"{a.id}\t{a.full_name}\t{len(a.links)} links")
        return 0
    from twin_assets.defs.partitions import AUTHORS_PARTITION

    instance = _instance()
    existing = set(instance.get_dynamic_partitions(AUTHORS_PARTITION))
    new = [a.id for a in authors if a.id not in existing]
    if new:
        instance.add_dynamic_partitions(AUTHORS_PARTITION, new)
    store = _store(_warehouse())
    for a in authors:
        store.upsert_author(a)
    print(f"authors: {len(authors)} registered, {len(new)} new partitions: {', '.join(new) or '-'}")
    return 0


def _purge(args: argparse.Namespace, authors) -> int:
    from twin_assets.authors.purge import ensure_not_registered
    from twin_assets.defs.authors.purge import purge_author_everywhere

    if not args.author_id:
        raise CliError("twin authors purge needs the author id")
    if not _is_author_id(args.author_id):
        raise CliError(
            f"{args.author_id!r} is not an author id (a lowercase slug: letters, digits, '-' or '_')"
        )
    ensure_not_registered(args.author_id, authors)  # AuthorStillRegistered: "refused: ..."
    if not args.yes:
        try:
            answer = input(
                f"Delete every document, vector, dataset and model of {args.author_id!r}? "
                "Type the author id to confirm: "
            )
        except EOFError:
            answer = ""
        if answer.strip() != args.author_id:
            print("not confirmed; nothing deleted (pass --yes to skip the question)", file=sys.stderr)
            return 1
    resources = _resources()
    report = purge_author_everywhere(  # PurgeFailed: "purge incomplete (safe to re-run): ..."
        args.author_id,
        instance=_instance(),
        store=_store(_warehouse()),
        qdrant=resources["qdrant"],
        artifacts=resources["artifacts"],
        keep_artifacts=args.keep_artifacts,
    )
    print(report.summary())
    return 0


def _is_author_id(author_id: str) -> bool:
    """The registry's own rule (a slug), so a typo is refused before anyone is asked to confirm."""
    from pydantic import ValidationError

    from twin_assets.domain.documents import Author

    try:
        Author(id=author_id, full_name=author_id)
    except ValidationError:
        return False
    return True


def cmd_warehouse(args: argparse.Namespace) -> int:
    wh = _warehouse()
    if wh.uri:
        print(f"warehouse is external (TWIN_MONGO_URI); nothing to {args.action}")
        return 0
    server = wh.embedded()
    if args.action == "start":
        pid = server.start()
        print(f"embedded warehouse at {server.uri} (pid {pid}, data {server.data_dir})")
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        pid = server.pid()
        print(f"running, pid {pid}, {server.uri}" if pid else "not running")
        return 0 if pid else 1
    return 0


def _site_pid_file() -> Path:
    return data_dir() / "sample-site.pid"


def _is_sample_site(proc: ProcessInfo) -> bool:
    """Whether a process is the sample site (after a reboot the PID file may name anything)."""
    return "twin_assets.sample_data.server" in proc.argv


def cmd_sample(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        from twin_assets.sample_data.prepare import prepare_sample

        for name, path in prepare_sample(data_dir()).items():
            print(f"{name}: {path}")
        return 0
    if args.action == "serve":
        from twin_assets.sample_data import server

        sys.argv = ["server", "--port", str(args.port)]
        server.main()
        return 0
    pid_file = _site_pid_file()
    if args.action == "start":
        proc = processes.start_detached(
            [sys.executable, "-m", "twin_assets.sample_data.server", "--port", str(args.port)],
            log_file=data_dir() / "sample-site.log",
            pid_file=pid_file,
        )
        import socket

        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", args.port)) == 0:
                    print(f"sample site at http://127.0.0.1:{args.port} (pid {proc.pid})")
                    return 0
            time.sleep(0.1)
        print("sample site did not start", file=sys.stderr)
        return 1
    if args.action == "stop":
        pid = processes.stop(pid_file, _is_sample_site, timeout_s=10.0)
        print(f"stopped sample site (pid {pid})" if pid is not None else "sample site not running")
        return 0
    return 2


def _sample_port() -> int:
    raw = os.environ.get("TWIN_SAMPLE_PORT", "") or "8765"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise CliError(f"TWIN_SAMPLE_PORT={raw!r} is not a port number")
    return int(raw)


def run_verdict(instance, author_id: str) -> tuple[int, list[str]]:
    """The latest run for one author, read back from the Dagster instance: (exit code, lines).

    A failing `deploy_gate` is the evaluation's verdict on the trained model, not a broken
    pipeline: when it is the run's only failure, the exit code is 0 and the verdict is printed.
    Any other failed step (or no run at all) is exit code 1."""
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": author_id}), limit=1)
    if not runs:
        return 1, [f"no run for author {author_id!r} in this Dagster instance"]
    run = runs[0]
    failed: set[str] = set()
    gate = None
    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    for record in instance.all_logs(run.run_id, of_type=kinds):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_key:
            failed.add(event.step_key)
        elif getattr(event.event_specific_data, "check_name", None) == "deploy_gate":
            gate = event.event_specific_data
    lines = [f"run {run.run_id[:8]} for {author_id}: {run.status.value}"]
    if gate is not None:
        verdict = "PASSED" if gate.passed else "FAILED"
        lines.append(f"deploy gate: {verdict}: {gate.description or ''}".rstrip(": "))
    only_gate = failed == {"evaluation_report"} and gate is not None and not gate.passed
    if failed and not only_gate:
        lines.append(f"failed steps: {', '.join(sorted(failed))}")
        return 1, lines
    if only_gate:
        lines.append("every other asset materialized; the gate keeps this model from being deployed")
    return 0, lines


def cmd_gate(args: argparse.Namespace) -> int:
    import dagster as dg

    code, lines = run_verdict(dg.DagsterInstance.get(), args.author_id)
    print("\n".join(lines))
    return code


def _key_ring():
    from twin_assets.serving.keys import KeyRing

    return KeyRing(_store(_warehouse()), cache_ttl_s=0)


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def cmd_keys(args: argparse.Namespace) -> int:
    """Keys are printed once, at creation (on stdout alone, so `KEY=$(twin keys create ci)`
    works); listings show the id and the prefix, never the key or its hash."""
    if args.action == "create":
        if not args.target:
            raise CliError("twin keys create needs a name (who or what will use the key)")
        for author in args.author or []:
            if not _is_author_id(author):
                raise CliError(
                    f"{author!r} is not an author id (a lowercase slug: letters, digits, '-' or '_')"
                )
        raw, record = _key_ring().create(args.target, args.author)
        scope = ", ".join(record.authors) if record.authors is not None else "every author"
        print(f"created key {record.id} ({record.name}; may ask: {scope})", file=sys.stderr)
        print(raw)
        print(
            "Store this key now: it is shown only this once (only its hash is kept). "
            f"Revoke it with `twin keys revoke {record.id}`.",
            file=sys.stderr,
        )
        return 0
    ring = _key_ring()
    if args.action == "list":
        if args.target:
            raise CliError("twin keys list takes no argument")
        print("id\tname\tprefix\tauthors\tcreated\trevoked")
        for k in ring.list():
            authors = ",".join(k.authors) if k.authors is not None else "*"
            print(f"{k.id}\t{k.name}\t{k.prefix}\t{authors}\t{_when(k.created_at)}\t{_when(k.revoked_at)}")
        return 0
    if not args.target:
        raise CliError("twin keys revoke needs the key's id or prefix (see `twin keys list`)")
    from twin_assets.serving.keys import KEY_PATTERN

    shown = "the given key" if KEY_PATTERN.fullmatch(args.target.strip()) else repr(args.target)
    record = ring.resolve(args.target)
    if record is None:
        raise CliError(f"no key matches {shown} (ids and prefixes: `twin keys list`)")
    if not record.active:
        print(f"key {record.id} ({record.name}) was already revoked at {_when(record.revoked_at)}")
        return 0
    if not ring.revoke(record.id):
        raise CliError(f"key {record.id} could not be revoked (revoked concurrently?); see `twin keys list`")
    print(f"revoked key {record.id} ({record.name}); a running service refuses it within seconds")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The service's process lifecycle lives in `twin_assets.server`; this parses, and turns its
    errors (a bad TWIN_SERVE_* variable, a port in use, a start that failed) into one line."""
    from twin_assets import server

    try:
        settings = server.settings_from_env()
        update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        if update:
            settings = type(settings).model_validate({**settings.model_dump(), **update})
    except ValueError as exc:  # pydantic's ValidationError included
        raise CliError(f"serve settings: {_validation_message(exc)}") from exc
    try:
        if args.action == "run":
            server.run(settings)
            return 0
        if args.action == "start":
            pid = server.start(settings)
            print(f"twin service at {settings.base_url} (pid {pid})")
            return 0
        if args.action == "stop":
            print("stopped" if server.stop() else "not running")
            return 0
        status = server.status()
    except server.ServeError as exc:
        raise CliError(str(exc)) from exc
    if not status:
        print("not running")
        return 1
    print("running: " + ", ".join(f"{k} {v}" for k, v in status.items() if k != "running"))
    return 0


def _validation_message(exc: ValueError) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def cmd_runs(args: argparse.Namespace) -> int:
    """Without the daemon, a run whose process was killed stays STARTED and keeps its pool slot
    (every later embedding run would wait on it): `reap` marks such runs failed and frees their
    slots (every run also does this when it starts, and the daemon's sensor every 30 s)."""
    import dagster as dg

    from twin_assets.defs.runs import describe_pool, find_dead_runs, reap_dead_runs

    with dg.DagsterInstance.get() as instance:
        if args.action == "status":
            dead = find_dead_runs(instance)
            for run in dead:
                print(f"dead: run {run.run_id[:8]} ({run.status}): {run.reason}")
            if not dead:
                print("no dead runs")
            print(describe_pool(instance, "qdrant"))
            return 0
        reaped = reap_dead_runs(instance)
    for run_id in reaped:
        print(f"reaped run {run_id[:8]}: marked failed, pool slots freed")
    if not reaped:
        print("no dead runs")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """One command to stop what the main command leaves running: the inference service, the
    sample site and the embedded warehouse (each by its PID file; data is kept)."""
    from twin_assets import server

    stopped = server.stop()
    print("inference service: " + ("stopped" if stopped else "not running"))
    cmd_sample(argparse.Namespace(action="stop", port=None))
    print("warehouse: ", end="")
    return cmd_warehouse(argparse.Namespace(action="stop"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twin", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of user errors too (or TWIN_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "authors", help="list the registry, sync it into Dagster and the warehouse, or purge an author"
    )
    p.add_argument("action", choices=["list", "sync", "purge"])
    p.add_argument("author_id", nargs="?", help="purge: the author to forget")
    p.add_argument("--yes", action="store_true", help="purge: do not ask for confirmation")
    p.add_argument("--keep-artifacts", action="store_true", help="purge: keep datasets and models")
    p.set_defaults(func=cmd_authors)
    p = sub.add_parser("warehouse", help="the embedded MongoDB wire-protocol server")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_warehouse)
    p = sub.add_parser("sample", help="the bundled sample author")
    p.add_argument("action", choices=["prepare", "start", "stop", "serve"])
    p.add_argument("--port", type=int, default=None, help="default: TWIN_SAMPLE_PORT, else 8765")
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("gate", help="the latest run's outcome for an author and the deploy gate's verdict")
    p.add_argument("author_id")
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("keys", help="API keys of the inference service: create, list, revoke")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("target", nargs="?", help="create: the key's name; revoke: its id or prefix")
    p.add_argument(
        "--author",
        action="append",
        help="create: an author the key may ask (repeat for several; default: every author)",
    )
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("serve", help="the inference service (OpenAI-compatible API and RAG answers)")
    p.add_argument("action", choices=["run", "start", "stop", "status"])
    p.add_argument("--host", default=None, help="bind address (default: TWIN_SERVE_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: TWIN_SERVE_PORT)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser(
        "runs", help="dead runs (a killed process): list them, or fail them and free their slots"
    )
    p.add_argument("action", choices=["reap", "status"])
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("stop", help="stop the inference service, the sample site and the warehouse")
    p.set_defaults(func=cmd_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("TWIN_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        if args.command == "sample" and args.port is None:
            args.port = _sample_port()
        return args.func(args)
    except KeyboardInterrupt:
        print("twin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if message is None or debug:
            raise
        print(f"twin: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
