"""Mutation testing of the code that must not break silently (not run in CI).

    nice -n 19 .venv/bin/python scripts/mutation.py [--only TARGET ...] [--names FUNCTION ...]
        [--before REV] [--budget MINUTES]

Each target names a file, the functions (or module-level names) in it to mutate, and a fast
test selection that covers them; mutmut 2 (installed on first use, pinned below) mutates the
file in place, so the `rotor-slack serve` processes the tests start run the mutant too.
`--before REV` runs the same mutants against the tests as they were at REV (for a before/after
score). Results: `.venv/bin/mutmut results` / `mutmut show ID`; the cache is `.mutmut-cache`.

When code moves, change TARGETS only.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = "mutmut==2.5.1"  # 2.x mutates in place, which subprocess-based tests need

SQLITE_ONLY = "sqlite and "


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    names: tuple[str, ...]  # "Class.method", "function" or a module-level variable
    tests: tuple[str, ...]  # pytest arguments: files, then -k and the like
    quick: tuple[str, ...] = ()  # in-process tests run first, alone: most mutants die there


DECISION_TESTS = (
    "tests/test_decisions.py",
    "tests/test_slash.py",
    "tests/test_quorum.py",
    "-k",
    SQLITE_ONLY + "(concurrent or crashed or unauthorized or elsewhere or rotor_down or lost "
    "or never_seen or count_right or requester_cannot or quorum_progress)",
)

# In priority order: a run with a time budget does the first ones first.
TARGETS = [
    Target(
        "blocks",
        "app/slack/blocks/text.py",
        ("escape", "mask_secrets", "_SECRET_KEY", "pretty_payload", "preview"),
        ("tests/test_blocks.py", "-k", "not any_payload"),  # the slow property test adds nothing
    ),
    Target(
        "claim",
        "app/db/approvals.py",
        ("Approvals.claim_decision", "Approvals.release_claim", "Approvals.record_decision"),
        DECISION_TESTS,
    ),
    Target(
        "decisions",
        "app/decisions.py",
        ("Decider.vet", "Decider._decide", "Decider._decided_elsewhere"),
        DECISION_TESTS,
    ),
    Target(
        "webhooks",
        "app/webhooks.py",
        ("PendingEvent", "verify", "parse", "webhook_endpoint"),
        (
            "tests/test_webhooks.py",
            "-k",
            SQLITE_ONLY + "(queue_channel or redelivery or signatures or malformed or ignored "
            "or count_webhook)",
        ),
        ("tests/test_webhook_intake.py",),
    ),
    Target(
        "outbox",
        "app/db/outbox.py",
        (
            "OutboxTasks.due_lanes",
            "OutboxTasks.claim_run",
            "OutboxTasks.release",
            "OutboxTasks.finish",
        ),
        (
            "tests/test_faults.py",
            "tests/test_webhooks.py",
            "-k",
            SQLITE_ONLY + "(hands_back or crash_after or storm or redelivery_posts_once)",
        ),
        ("tests/test_outbox_store.py",),
    ),
]


def line_ranges(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """1-based inclusive line ranges of the named definitions in a file."""
    tree = ast.parse(path.read_text())
    found: dict[str, tuple[int, int]] = {}

    def visit(body, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found[prefix + node.name] = (node.lineno, node.end_lineno)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.Assign) and not prefix:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = (node.lineno, node.end_lineno)

    visit(tree.body, "")
    missing = [n for n in names if n not in found]
    if missing:
        sys.exit(f"mutation: {path}: no {', '.join(missing)} (moved? update TARGETS)")
    return [found[n] for n in names]


# --- the mutmut hook (scripts/mutmut_config.py calls this for every mutant) -----------------


def pre_mutation(context) -> None:
    chosen = [t for t in TARGETS if t.name in os.environ["MUTATION_TARGETS"].split(",")]
    only = set(filter(None, os.environ.get("MUTATION_NAMES", "").split(",")))
    line = context.current_line_index + 1
    for target in chosen:
        if Path(context.filename).resolve() != ROOT / target.path:
            continue
        names = tuple(n for n in target.names if not only or n in only)
        if any(a <= line <= b for a, b in line_ranges(ROOT / target.path, names)):
            context.config.test_command = runner(target)
            return
    context.skip = True


def runner(target: Target) -> str:
    return f"{sys.executable} {__file__} --pytest {target.name}"


def run_pytest(name: str) -> int:
    """Run a target's selection; any failure (collection errors too) counts as killed."""
    target = next(t for t in TARGETS if t.name == name)
    tests_root = Path(os.environ.get("MUTATION_TESTS_ROOT", ROOT))
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q"]
    runs = [["-n", "0", *target.quick]] if target.quick else []
    n = "2" if "test_blocks" not in target.tests[0] else "0"
    runs.append(["-n", n, *target.tests])
    for args in runs:
        args = [a.replace("tests/", f"{tests_root}/tests/", 1) for a in args]
        if not Path(args[2]).exists():
            continue  # under `--before REV`, a file that did not exist at REV
        result = subprocess.run(pytest + args, cwd=tests_root, stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            return 1
    return 0


# --- the run ---------------------------------------------------------------------------------


def ensure_mutmut() -> Path:
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)
    return mutmut


def tests_at(rev: str) -> Path:
    """The tests as they were at `rev`, in a directory of their own."""
    where = Path(tempfile.mkdtemp(prefix="mutation-before-"))
    archive = subprocess.run(
        ["git", "archive", rev, "tests"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    shutil.copy(ROOT / "pyproject.toml", where)  # pytest's options
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="target names", default=None)
    parser.add_argument("--names", nargs="*", default=[], help="only these functions of them")
    parser.add_argument("--before", help="a git revision: use the tests as they were there")
    parser.add_argument("--budget", type=float, default=25, help="minutes of wall time at most")
    parser.add_argument("--pytest", help=argparse.SUPPRESS)  # mutmut's runner
    args = parser.parse_args()
    if args.pytest:
        return run_pytest(args.pytest)

    chosen = [t for t in TARGETS if args.only is None or t.name in args.only]
    mutmut = ensure_mutmut()
    paths = list(dict.fromkeys(t.path for t in chosen))  # mutmut goes through them in order
    originals = {p: (ROOT / p).read_text() for p in paths}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "scripts"), PYTHONDONTWRITEBYTECODE="1")
    env["MUTATION_TARGETS"] = ",".join(t.name for t in chosen)
    env["MUTATION_NAMES"] = ",".join(args.names)
    if args.before:
        env["MUTATION_TESTS_ROOT"] = str(tests_at(args.before))
    (ROOT / ".mutmut-cache").unlink(missing_ok=True)
    command = [
        str(mutmut),
        "run",
        "--paths-to-mutate",
        ",".join(paths),
        "--runner",
        # Also the baseline run, whose time x10 is mutmut's timeout: take one with services.
        runner(next((t for t in chosen if "test_blocks" not in t.tests[0]), chosen[0])),
        "--tests-dir",
        "tests",
        "--no-progress",
    ]
    started = time.monotonic()
    try:
        subprocess.run(command, cwd=ROOT, env=env, timeout=args.budget * 60)
    except subprocess.TimeoutExpired:
        print(f"mutation: stopped after the {args.budget:g} minute budget", file=sys.stderr)
    finally:
        for path, text in originals.items():  # never leave a mutant behind
            (ROOT / path).write_text(text)
            (ROOT / (path + ".bak")).unlink(missing_ok=True)
    print(f"mutation: {time.monotonic() - started:.0f}s")
    subprocess.run([str(mutmut), "results"], cwd=ROOT, env=env)
    subprocess.run([str(mutmut), "show", "all"], cwd=ROOT, env=env)  # the diffs, for the notes
    return 0


if __name__ == "__main__":
    sys.exit(main())
