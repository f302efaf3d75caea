"""Repository files that are not the author's writing: vendored and build directories, lock
files, generated artefacts, licences.

The crawler skips them when it clones a repository (`crawling.github`), and the cleaner drops
them again from what a raw document holds (`features.cleaning`). The cleaner's names are part
of its versioned rules (CLEANER_VERSION): growing them changes cleaned documents, so they grow
only with a version bump. The crawler's lists may grow freely (a raw document that changes is
simply cleaned again), so they are the cleaner's plus what only the crawler knows.
"""

from __future__ import annotations

# -- what the cleaner drops (and the crawler skips) ---------------------------------------------
CLEANER_SKIP_DIRS = frozenset({
    "node_modules", "dist", "build", "vendor", ".git", "__pycache__", ".venv", "venv",
    "site-packages",
})
CLEANER_LOCK_FILES = frozenset({
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "uv.lock", "pipfile.lock",
    "cargo.lock", "gemfile.lock", "composer.lock", "go.sum",
})
GENERATED_SUFFIXES = (".min.js", ".min.css", "_pb2.py", "_pb2_grpc.py", ".map")
LICENCE_FILES = frozenset({"license", "license.md", "license.txt", "copying", "notice"})

# The cleaner's names as it matches them (lower-cased file names and suffixes).
CLEANER_SKIP_FILE_NAMES = CLEANER_LOCK_FILES | LICENCE_FILES | {".ds_store"}
CLEANER_SKIP_SUFFIXES = (*GENERATED_SUFFIXES, ".lock")

# -- what only the crawler skips ----------------------------------------------------------------
CRAWLER_SKIP_DIRS = CLEANER_SKIP_DIRS | {
    "vendors", "third_party", "third-party", "thirdparty", "bower_components", "_build", "env",
    ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".next", ".nuxt", "target",
    ".gradle", ".idea", ".vscode", "coverage", "htmlcov", ".eggs",
}
CRAWLER_LOCK_FILES = CLEANER_LOCK_FILES | {
    "npm-shrinkwrap.json", "pdm.lock", "packages.lock.json", "podfile.lock", "mix.lock",
    "flake.lock", "bun.lockb",
}
CRAWLER_GENERATED_SUFFIXES = (*GENERATED_SUFFIXES, ".min.mjs", ".pb.go", ".pyc", ".class", ".o",
                              ".so", ".dll", ".exe")
