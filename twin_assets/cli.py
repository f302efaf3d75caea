"""`twin`: the small command line around the pipeline (authors, embedded services, sample).

    twin authors list | sync         registry -> Dagster partitions + warehouse author documents
    twin authors purge ID [--yes]    forget an author removed from the registry (all their data)
    twin warehouse start | stop | status
    twin sample prepare | start | stop | serve
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from twin_assets.paths import data_dir


def _resources() -> dict:
    from twin_assets.defs.resources import build_resources

    return build_resources()


def _warehouse():
    from dagster import EnvVar

    wh = _resources()["warehouse"]
    if isinstance(wh.uri, EnvVar):  # resolve for use outside a Dagster run
        wh = wh.model_copy(update={"uri": wh.uri.get_value()})
    return wh


def cmd_authors(args: argparse.Namespace) -> int:
    registry = _resources()["authors"]
    authors = registry.authors()
    if args.action == "purge":
        return _purge(args, authors)
    if args.action == "list":
        for a in authors:
            print(f"{a.id}\t{a.full_name}\t{len(a.links)} links")
        return 0
    import dagster as dg

    from twin_assets.defs.partitions import authors_partitions

    instance = dg.DagsterInstance.get()
    existing = set(instance.get_dynamic_partitions(authors_partitions.name))
    new = [a.id for a in authors if a.id not in existing]
    if new:
        instance.add_dynamic_partitions(authors_partitions.name, new)
    store = _warehouse().get_store()
    for a in authors:
        store.upsert_author(a)
    print(f"authors: {len(authors)} registered, {len(new)} new partitions: {', '.join(new) or '-'}")
    return 0


def _purge(args: argparse.Namespace, authors) -> int:
    from twin_assets.authors.purge import AuthorStillRegistered, PurgeFailed, ensure_not_registered
    from twin_assets.defs.authors.purge import purge_author_everywhere

    if not args.author_id:
        print("twin authors purge needs the author id", file=sys.stderr)
        return 2
    try:
        ensure_not_registered(args.author_id, authors)
    except AuthorStillRegistered as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    if not args.yes:
        answer = input(f"Delete every document, vector, dataset and model of {args.author_id!r}? "
                       "Type the author id to confirm: ")
        if answer.strip() != args.author_id:
            print("not confirmed; nothing deleted", file=sys.stderr)
            return 1
    import dagster as dg

    resources = _resources()
    try:
        report = purge_author_everywhere(
            args.author_id, instance=dg.DagsterInstance.get(), store=_warehouse().get_store(),
            qdrant=resources["qdrant"], artifacts=resources["artifacts"],
            keep_artifacts=args.keep_artifacts,
        )
    except PurgeFailed as exc:
        print(f"purge incomplete (safe to re-run): {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def cmd_warehouse(args: argparse.Namespace) -> int:
    wh = _warehouse()
    if wh.uri:
        print(f"warehouse is external ({'TWIN_MONGO_URI'}); nothing to {args.action}")
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
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(data_dir() / "sample-site.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "twin_assets.sample_data.server", "--port", str(args.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pid_file.write_text(str(proc.pid))
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
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            print(f"stopped sample site (pid {pid})")
        except (OSError, ValueError):
            print("sample site not running")
        pid_file.unlink(missing_ok=True)
        return 0
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("authors", help="list the registry, sync it into Dagster and the warehouse, or purge an author")
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
    p.add_argument(
        "--port", type=int, default=int(os.environ.get("TWIN_SAMPLE_PORT", "8765"))
    )
    p.set_defaults(func=cmd_sample)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
