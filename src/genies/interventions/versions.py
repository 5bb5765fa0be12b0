"""Method versions, kept honest by a lock of each method's normalised code.

A job's key names a method by its `version`, not by a hash of its files: editing a comment, a
docstring or an unrelated module reruns nothing. So that a change in what a method computes
cannot forget its version bump, `versions.lock.json` records, per method (and for hidden-state
extraction), the version and a digest of the code its numbers depend on, normalised so that
comments, docstrings and formatting do not count. tests/test_method_versions.py compares the
lock with the code; when it fails, either bump the method's `version` (its results change) or
not (a pure refactor), then refresh the lock:

    python -m genies.interventions.versions --update
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path

LOCK_FILE = Path(__file__).with_name("versions.lock.json")
# Modules whose code can change a method's numbers. Imports are followed only inside these.
RESULT_MODULES = ("genies.interventions.", "genies.models.base", "genies.models.scoring", "genies.models.hidden",
                  "genies.models.templates", "genies.models.tree_attention", "genies.models.batching",
                  "genies.models.prefix_tree",
                  "genies.models.activations", "genies.data.schema")
# The contract's plumbing: how states are saved, progress shown, methods found. Not results.
NOT_RESULTS = {"genies.interventions.base", "genies.interventions.context", "genies.interventions.fitted",
               "genies.interventions.hparams", "genies.interventions.registry", "genies.interventions.versions"}
EXTRACTION = "(hidden-state extraction)"
EXTRACTION_MODULES = ("genies.models.hidden", "genies.models.templates")


def normalised_source(path: Path) -> str:
    """The module's syntax tree without docstrings: comments and layout never reach it."""
    return _normalised(Path(path).read_text(encoding="utf-8"))


# Keyed by the text itself, so an edited file is never served stale; the lock check reads each
# shared module (scores, schema, the engines) once instead of once per method.
@functools.lru_cache(maxsize=256)
def _normalised(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _is_result_module(name: str) -> bool:
    return name not in NOT_RESULTS and any(name == m or name.startswith(m) for m in RESULT_MODULES)


def result_modules(roots: tuple[str, ...]) -> list[str]:
    """`roots` and every result module they import, directly or not (imports inside functions too)."""
    todo, seen, found = list(roots), set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in roots and not _is_result_module(name):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # `from genies.x import function`: not a module
            continue
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue
        found.append(name)
        package = name if spec.submodule_search_locations else name.rpartition(".")[0]
        todo.extend(_imported_names(Path(spec.origin).read_text(encoding="utf-8"), package))
    return sorted(found)


@functools.lru_cache(maxsize=256)
def _imported_names(source: str, package: str) -> tuple[str, ...]:
    """Every name an import statement of `source` may bring in as a module: `import a.b` gives
    a.b; `from a import b` gives a and a.b (b may be a module or not)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return tuple(names)


def code_digest(modules: list[str]) -> str:
    digest = hashlib.sha256()
    for name in modules:
        origin = importlib.util.find_spec(name).origin
        digest.update(name.encode() + b"\0" + normalised_source(Path(origin)).encode() + b"\0")
    return digest.hexdigest()[:16]


def method_roots(cls: type) -> tuple[str, ...]:
    """The modules defining the method class and its genies base classes (not the contract)."""
    return tuple(sorted({k.__module__ for k in cls.__mro__
                         if k.__module__.startswith("genies.") and k.__module__ not in NOT_RESULTS}))


def current() -> dict[str, dict[str, object]]:
    """What the lock should say now: every method genies ships (the built-in modules and genies'
    own entry points, such as `legacy`), and extraction. Other plugins and classes registered at
    run time are not genies' to lock."""
    from importlib.metadata import entry_points

    from genies.interventions.registry import _REGISTRY, ENTRY_POINT_GROUP, builtin_modules
    from genies.models.activations import EXTRACTION_VERSION

    for module in builtin_modules():
        importlib.import_module(f"genies.interventions.{module}")
    shipped = {name: cls for name, cls in _REGISTRY.items() if cls.__module__.startswith("genies.")}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.startswith("genies."):  # whether or not something loaded it before
            cls = ep.load()
            shipped[cls.name] = cls
    entries: dict[str, dict[str, object]] = {}
    for name, cls in sorted(shipped.items()):
        modules = result_modules(method_roots(cls))
        entries[name] = {"version": cls.version, "code": code_digest(modules), "modules": modules}
    extraction = result_modules(EXTRACTION_MODULES)
    entries[EXTRACTION] = {"version": EXTRACTION_VERSION, "code": code_digest(extraction), "modules": extraction}
    return entries


def read_lock() -> dict[str, dict[str, object]]:
    return json.loads(LOCK_FILE.read_text(encoding="utf-8")) if LOCK_FILE.is_file() else {}


UPDATE = "python -m genies.interventions.versions --update"


def mismatches(now: dict[str, dict[str, object]], locked: dict[str, dict[str, object]]) -> list[str]:
    """One line per entry where the lock and the code disagree, each saying how to fix it."""
    problems = []
    for name in sorted(set(now) | set(locked)):
        code, lock = now.get(name), locked.get(name)
        if code == lock:
            continue
        if lock is None:
            problems.append(f"{name}: not in the lock; record it with `{UPDATE}`")
        elif code is None:
            problems.append(f"{name}: in the lock but not shipped any more; drop it with `{UPDATE}`")
        elif code["code"] != lock["code"] and code["version"] == lock["version"]:
            problems.append(f"{name}: its code changed but its version is still "
                            f"{code['version']}: bump `version` if what it computes changed (a pure refactor "
                            f"keeps it), then refresh the lock with `{UPDATE}`")
        else:
            problems.append(f"{name}: version {code['version']} in the code, {lock['version']} in the lock; "
                            f"refresh the lock with `{UPDATE}`")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description="Check or refresh the method version lock.")
    parser.add_argument("--update", action="store_true", help="rewrite versions.lock.json from the code")
    args = parser.parse_args()
    now, locked = current(), read_lock()
    if args.update:
        LOCK_FILE.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {LOCK_FILE}")
        return
    problems = mismatches(now, locked)
    print("\n".join(problems) if problems else "lock matches the code")
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
