"""Per-kind material for code instructions, read from the code itself.

When a function, class or file has no docstring to describe it, an instruction can still name
what the answer contains: the language, the functions a test calls, a record class's fields, a
module's docstring and exports, a config file's top-level sections, or the words of its comments.
"""

from __future__ import annotations

import ast
import re
import textwrap

from twin_assets.datasets.extracts import Extract

_LANG_NAMES = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "go": "Go",
    "rust": "Rust",
    "java": "Java",
    "ruby": "Ruby",
    "bash": "Bash",
    "c": "C",
    "cpp": "C++",
    "sql": "SQL",
    "toml": "TOML",
    "yaml": "YAML",
}


def _lang(e: Extract) -> str:
    lang = (e.code_language or "").lower()
    return _LANG_NAMES.get(lang, lang.capitalize() or "code")


def _called_names(code: str) -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", code))))


def _class_fields(source: str) -> list[str]:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return []
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if cls is None:
        return []
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)][
        :4
    ]


def _module_summary(source: str) -> tuple[str, list[str]]:
    """(module docstring, names it exposes) of a Python file without top-level defs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "", []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            if isinstance(node.value, ast.List | ast.Tuple):
                names = [
                    c.value
                    for c in node.value.elts
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
            break
        if isinstance(node, ast.ImportFrom) and node.level:  # re-exports of a package
            names.extend(a.asname or a.name for a in node.names)
    public = [n for n in names if not n.startswith("_")]
    return ast.get_docstring(tree) or "", public


def _config_sections(e: Extract) -> list[str]:
    if e.code_language == "toml":
        tables = re.findall(r"^\s*\[+([^\[\]\n]+)\]+\s*$", e.text, re.M)
    elif e.code_language == "yaml":
        tables = re.findall(r"^([A-Za-z_][\w-]*)\s*:", e.text, re.M)
    else:
        return []
    seen: list[str] = []
    for t in tables:
        top = t.strip().split(".")[0].strip("\"'")
        if top and top not in seen:
            seen.append(top)
    return seen[:3]


def _comments(e: Extract) -> str:
    marks = r"#|//|--|;" if e.code_language not in ("python", "toml", "yaml", "bash", "ruby") else r"#"
    return "\n".join(
        m.group(1)
        for m in re.finditer(rf"(?:{marks})\s?(.*)$", e.text, re.M)
        if not m.group(1).startswith("!")
    )
