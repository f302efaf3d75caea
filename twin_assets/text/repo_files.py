"""Repository files that are not the author's writing: vendored and build directories, lock
files, generated artefacts, licences.

The crawler skips them when it clones a repository (`crawling.github`), and the cleaner drops
them again from what a raw document holds (`features.cleaning`). The cleaner's names are part
of its versioned rules (CLEANER_VERSION): growing them changes cleaned documents, so they grow
only with a version bump. The crawler's lists may grow freely (a raw document that changes is
simply cleaned again), so they are the cleaner's plus what only the crawler knows.

`hygiene_reason` (credential-like files, dot-files, SVG) is applied by both, unchanged between
them: it is part of the cleaner's rules since CLEANER_VERSION 2.
"""

from __future__ import annotations

import fnmatch
import re

# -- what the cleaner drops (and the crawler skips) ---------------------------------------------
CLEANER_SKIP_DIRS = frozenset(
    {
        "node_modules",
        "dist",
        "build",
        "vendor",
        ".git",
        "__pycache__",
        ".venv",
        "venv",
        "site-packages",
    }
)
CLEANER_LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "uv.lock",
        "pipfile.lock",
        "cargo.lock",
        "gemfile.lock",
        "composer.lock",
        "go.sum",
    }
)
GENERATED_SUFFIXES = (".min.js", ".min.css", "_pb2.py", "_pb2_grpc.py", ".map")
LICENCE_FILES = frozenset({"license", "license.md", "license.txt", "copying", "notice"})

# The cleaner's names as it matches them (lower-cased file names and suffixes).
CLEANER_SKIP_FILE_NAMES = CLEANER_LOCK_FILES | LICENCE_FILES | {".ds_store"}
CLEANER_SKIP_SUFFIXES = (*GENERATED_SUFFIXES, ".lock")

# -- what only the crawler skips ----------------------------------------------------------------
CRAWLER_SKIP_DIRS = CLEANER_SKIP_DIRS | {
    "vendors",
    "third_party",
    "third-party",
    "thirdparty",
    "bower_components",
    "_build",
    "env",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".next",
    ".nuxt",
    "target",
    ".gradle",
    ".idea",
    ".vscode",
    "coverage",
    "htmlcov",
    ".eggs",
}
CRAWLER_LOCK_FILES = CLEANER_LOCK_FILES | {
    "npm-shrinkwrap.json",
    "pdm.lock",
    "packages.lock.json",
    "podfile.lock",
    "mix.lock",
    "flake.lock",
    "bun.lockb",
}
CRAWLER_GENERATED_SUFFIXES = (
    *GENERATED_SUFFIXES,
    ".min.mjs",
    ".pb.go",
    ".pyc",
    ".class",
    ".o",
    ".so",
    ".dll",
    ".exe",
)

# -- hygiene: what must never become training data, and what is not writing at all ---------------
# Credential-like files are refused by name *and* by content, placeholders included: a file that
# looks like one is never the author's prose or code worth learning, and one real secret in a
# training set or a vector payload cannot be taken back. Both the crawler and the cleaner apply
# these rules (the cleaner for raw documents crawled before they existed).
CREDENTIAL_FILE_NAMES = frozenset(
    {
        ".env",
        ".netrc",
        "_netrc",
        ".pgpass",
        ".htpasswd",
        ".npmrc",
        ".pypirc",
        ".git-credentials",
        ".dockercfg",
        "credentials",
        "terraform.tfstate",
        "terraform.tfstate.backup",
    }
)
CREDENTIAL_NAME_PATTERNS = (
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.crt",
    "*.cer",
    "*.der",
    "*.gpg",
    "*.kdbx",
    "*.tfvars",
    "*.tfstate",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "secrets.*",
    "secret.*",
    "client_secret*",
    "*service?account*.json",
    "*serviceaccount*.json",
    "token.json",
    "*.token",
    "access_token*",
    "refresh_token*",
)
# "credentials" / "secret" in the name of a data file (not of code: `test_credentials.py` is code).
_CREDENTIAL_WORDS = ("credential", "secret", "apikey", "api_key", "api-key", "password", "passwd")
_DATA_SUFFIXES = (
    ".json",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".cfg",
    ".conf",
    ".txt",
    ".xml",
    ".csv",
    ".properties",
    ".env",
    ".dat",
)
_CREDENTIAL_CONTENT_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    r"|\"type\"\s*:\s*\"service_account\""
    r"|\"private_key(?:_id)?\"\s*:"
    r"|\"client_secret\"\s*:"
    r"|aws_secret_access_key\s*="
)
# Not writing: images drawn as XML, and dot-files/dot-directories (tool configuration: `.gitignore`,
# `.github/`, `.vscode/`, `.pre-commit-config.yaml`).
NON_WRITING_SUFFIXES = (".svg", ".svgz")


def credential_reason(rel_path: str, text: str = "") -> str | None:
    """Why a repository file looks like a credential (None: it does not)."""
    name = rel_path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if name in CREDENTIAL_FILE_NAMES or any(fnmatch.fnmatchcase(name, p) for p in CREDENTIAL_NAME_PATTERNS):
        return "credential-like file name (never training data)"
    stem_has_word = any(w in name for w in _CREDENTIAL_WORDS)
    if stem_has_word and ("." not in name or name.endswith(_DATA_SUFFIXES)):
        return "credential-like file name (never training data)"
    if text and _CREDENTIAL_CONTENT_RE.search(text):
        return "holds a private key or service-account secret (never training data)"
    return None


def hygiene_reason(rel_path: str, text: str = "") -> str | None:
    """Why a repository file is kept out whatever its content: credentials, dot-files, SVG."""
    parts = [p for p in rel_path.replace("\\", "/").split("/") if p]
    if reason := credential_reason(rel_path, text):
        return reason
    if any(p.startswith(".") for p in parts):
        return "dot-file or dot-directory (tool configuration)"
    if parts and parts[-1].lower().endswith(NON_WRITING_SUFFIXES):
        return "SVG image"
    return None
